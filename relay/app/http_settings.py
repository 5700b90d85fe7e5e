"""``[http]``: the ops server's settings, and its two bearer tokens.

No I/O beyond reading a ``*_file`` secret when the model validator asks for it.

``auth_token`` (the status page, ``/status.json``, and the probes and ``/metrics`` with
``protect_probes``) and ``admin_token`` (the admin API, ``/admin/v1/``) each take one
inline value or a file. The file may hold several tokens, one per line, each optionally
named (:mod:`relay.core.bearer` has the format): every listed token is accepted, the first
is the one this replica sends to its peers. ``auth_token``/``admin_token`` themselves
stay a single :class:`~pydantic.SecretStr`: after validation they hold the first token,
so code and configurations from before rotation read them as before; the whole set is
:meth:`HttpSettings.tokens`, a private attribute that no dump, repr or ``config check``
shows. :mod:`relay.ops.token_file` re-reads a file when it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, PrivateAttr, SecretStr, model_validator

from relay.app.fields import Section, read_secret_file
from relay.core.bearer import MIN_TOKEN_LENGTH, TokenFileError, TokenSet, parse_token_file

__all__ = ["LONE_MIN_LENGTH", "HttpSettings", "TokenKey"]

TokenKey = Literal["auth_token", "admin_token"]

LONE_MIN_LENGTH: Final[Mapping[TokenKey, int]] = {
    "auth_token": 0,  # never had a minimum: an existing one keeps working
    "admin_token": MIN_TOKEN_LENGTH,
}
"""The length a key's token needs when it is the only one, unnamed (the format from
before rotation); a file of several tokens, or of a named one, needs 16 for each."""


def _token_set(given: SecretStr | None, file: Path | None, key: TokenKey) -> TokenSet | None:
    if file is not None:  # as before rotation, the file wins over an inline value
        text = read_secret_file(file, f"{key}_file")
        try:
            return parse_token_file(text, lone_min_length=LONE_MIN_LENGTH[key])
        except TokenFileError as exc:
            raise ValueError(f"{key}_file: {file}: {exc}") from None
    if given is None:
        return None
    if len(given.get_secret_value()) < LONE_MIN_LENGTH[key]:
        raise ValueError(f"{key} must be at least {LONE_MIN_LENGTH[key]} characters")
    return TokenSet.of(given.get_secret_value())


class HttpSettings(Section):
    """``[http]``: health, metrics and the status page."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    basic_user: str | None = None
    basic_password: SecretStr | None = None
    protect_probes: bool = False
    admin_token: SecretStr | None = None
    """Turns the admin API (``/admin/v1/``) on; never a ``[[clients]]`` key."""
    admin_token_file: Path | None = None
    _auth_tokens: TokenSet | None = PrivateAttr(default=None)
    _admin_tokens: TokenSet | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _auth(self) -> HttpSettings:
        self._auth_tokens = _token_set(self.auth_token, self.auth_token_file, "auth_token")
        self._admin_tokens = _token_set(self.admin_token, self.admin_token_file, "admin_token")
        for key, tokens in (("auth_token", self._auth_tokens), ("admin_token", self._admin_tokens)):
            if tokens is not None:
                object.__setattr__(self, key, SecretStr(tokens.first.value))
        if (self.basic_user is None) != (self.basic_password is None):
            raise ValueError("basic_user and basic_password go together")
        return self

    def tokens(self, key: TokenKey) -> TokenSet | None:
        """Every token ``key`` accepts as read at start (``None``: the key is unset)."""
        return self._auth_tokens if key == "auth_token" else self._admin_tokens

    def token_file(self, key: TokenKey) -> Path | None:
        return self.auth_token_file if key == "auth_token" else self.admin_token_file
