"""Reading an HTTP answer's body with a size cap, so a runaway answer cannot fill memory.

Where it sits: :class:`relay.exmail._client.ExmailClient` reads every body through
:func:`read_capped`; an answer over the cap raises
:class:`~relay.exmail._exceptions.ResponseTooLarge` (declared length or counted bytes).

A ``listen`` answer is read with ``max_field_bytes``: its over-long strings are cut as the
bytes arrive (:class:`relay.exmail._cut.StringCutter`), the cap applies to what is kept,
and the raw bytes may run to :data:`RAW_FACTOR` times the cap, so one huge field costs
neither the memory nor the rest of the answer.
"""

from __future__ import annotations

import aiohttp

from relay.exmail._cut import StringCutter
from relay.exmail._exceptions import ResponseTooLarge

__all__ = ["RAW_FACTOR", "read_capped"]

_CHUNK = 64 * 1024
RAW_FACTOR = 64


async def read_capped(
    operation: str,
    resp: aiohttp.ClientResponse,
    limit: int,
    *,
    max_field_bytes: int | None = None,
) -> bytes:
    """The whole body of ``resp``, or :class:`ResponseTooLarge` past ``limit`` bytes.

    With ``max_field_bytes``, every JSON string over it is cut (see the module docstring)
    and ``limit`` applies to the body as cut."""
    raw_limit = limit if max_field_bytes is None else limit * RAW_FACTOR
    if resp.content_length is not None and resp.content_length > raw_limit:
        raise ResponseTooLarge(f"{operation}: body of {resp.content_length} bytes over {raw_limit}")
    cutter: StringCutter | None = None
    chunks: list[bytes] = []
    size = 0
    raw = 0
    while chunk := await resp.content.read(_CHUNK):
        raw += len(chunk)
        if raw > raw_limit:
            raise ResponseTooLarge(f"{operation}: body over {raw_limit} bytes")
        if cutter is not None:
            cutter.feed(chunk)
            size = len(cutter.output)
        elif max_field_bytes is not None and raw > max_field_bytes:
            # Only a body longer than the field cap can hold a string over it: the
            # common, small answer never pays for the cutter.
            cutter = StringCutter(max_field_bytes)
            for earlier in chunks:
                cutter.feed(earlier)
            cutter.feed(chunk)
            chunks.clear()
            size = len(cutter.output)
        else:
            size += len(chunk)
            chunks.append(chunk)
        if size > limit:
            raise ResponseTooLarge(f"{operation}: body over {limit} bytes")
    return b"".join(chunks) if cutter is None else cutter.close()
