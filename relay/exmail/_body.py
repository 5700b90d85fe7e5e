"""Reading an HTTP answer's body with a size cap, so a runaway answer cannot fill memory.

Where it sits: :class:`relay.exmail._client.ExmailClient` reads every body through
:func:`read_capped`; an answer over the cap raises
:class:`~relay.exmail._exceptions.ResponseTooLarge` (declared length or counted bytes).
"""

from __future__ import annotations

import aiohttp

from relay.exmail._exceptions import ResponseTooLarge

__all__ = ["read_capped"]

_CHUNK = 64 * 1024


async def read_capped(operation: str, resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body of ``resp``, or :class:`ResponseTooLarge` past ``limit`` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        raise ResponseTooLarge(f"{operation}: body of {resp.content_length} bytes over {limit}")
    chunks: list[bytes] = []
    size = 0
    while chunk := await resp.content.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(f"{operation}: body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
