"""The ``[http]`` tokens as the ops server uses them: a fixed set for an inline token, a
set that follows its file for ``auth_token_file`` and ``admin_token_file``.

Where it sits: a composition helper of :mod:`relay.app.wiring` and :mod:`relay.app.peers`,
so the settings are read here, at the edge.
"""

from __future__ import annotations

from functools import partial

from relay.app.http_settings import LONE_MIN_LENGTH, HttpSettings, TokenKey
from relay.core.bearer import TokenSource, parse_token_file
from relay.ops.token_file import LiveTokens

__all__ = ["token_source"]


def token_source(http: HttpSettings, key: TokenKey) -> TokenSource | None:
    """What ``key`` accepts (``None``: unset): its file, read again when it changes,
    with the start's rules (:data:`LONE_MIN_LENGTH`); or the inline token."""
    tokens = http.tokens(key)
    path = http.token_file(key)
    if tokens is None or path is None:
        return tokens
    parse = partial(parse_token_file, lone_min_length=LONE_MIN_LENGTH[key])
    return LiveTokens(tokens, path=path, key=f"http.{key}_file", parse=parse)
