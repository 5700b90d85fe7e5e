"""The settings of tenants on the second Exmail API (``api = "api2"``), and ``[callback]``.

No I/O beyond reading a ``*_file`` secret when a model validator asks for it.

A ``[[tenants]]`` entry chooses its API with ``api``: ``"openapi"`` (the default, the
BizMail OpenApi of ``spec/PROTOCOL-NOTES.md``: ``client_id``/``client_secret``, a
``listen`` worker) or ``"api2"`` (``spec/EXMAIL-API-2-NOTES.md``: a ``corpid``, one
secret per application, and the new-mail callback's ``callback_token`` and
``encoding_aes_key``; no ``listen`` worker: new mail arrives by callback on the relay's
``[http]`` server, ``/callback/<tenant>``).

Every secret is a :class:`~pydantic.SecretStr` with a ``*_file`` variant (a Kubernetes
Secret mounted as a file), never shown in a repr, a log line or an error message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field, SecretStr, model_validator

from relay.app.fields import Duration, Section, read_secret_file
from relay.core.wecom_crypto import valid_encoding_aes_key, valid_token

__all__ = [
    "API2_APPLICATIONS",
    "API2_URL",
    "Api2TenantFields",
    "CallbackSettings",
]

API2_URL: Final = "https://api.exmail.qq.com/cgi-bin/"

# Key prefix -> the application (应用中心) whose secret it is (notes §2).
API2_APPLICATIONS: Final[dict[str, str]] = {
    "contact": "通讯录管理 (directory: department/*, user/*, group/*, tag/*)",
    "sso": "单点登录 (service/get_login_url)",
    "newmail": "新邮件提醒 (mail/newcount; the callback settings live on this app)",
    "option": "功能设置 (useroption/*)",
    "log": "日志查询 (log/*)",
}

_OPENAPI_ONLY = ("client_id", "client_secret", "client_secret_file")
_API2_ONLY = (
    "corpid",
    *(f"{app}_secret{tail}" for app in API2_APPLICATIONS for tail in ("", "_file")),
    "callback_token",
    "callback_token_file",
    "encoding_aes_key",
    "encoding_aes_key_file",
    "directory_interval",
    "directory_max_deletions",
    "directory_max_deletion_share",
    "directory_confirm_polls",
)


def _take_secret(model: Section, key: str) -> SecretStr | None:
    """``key`` or the content of ``key_file`` (not both), stored back on ``key``."""
    given: SecretStr | None = getattr(model, key)
    file: Path | None = getattr(model, f"{key}_file")
    if file is not None:
        if given is not None:
            raise ValueError(f"give {key} or {key}_file, not both")
        given = SecretStr(read_secret_file(file, f"{key}_file"))
        object.__setattr__(model, key, given)
    if given is not None and not given.get_secret_value():
        raise ValueError(f"{key} is empty")
    return given


class Api2TenantFields(Section):
    """The keys of a ``[[tenants]]`` entry that choose and configure the second API."""

    api: Literal["openapi", "api2"] = "openapi"
    corpid: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    contact_secret: SecretStr | None = None
    contact_secret_file: Path | None = None
    sso_secret: SecretStr | None = None
    sso_secret_file: Path | None = None
    newmail_secret: SecretStr | None = None
    newmail_secret_file: Path | None = None
    option_secret: SecretStr | None = None
    option_secret_file: Path | None = None
    log_secret: SecretStr | None = None
    log_secret_file: Path | None = None
    callback_token: SecretStr | None = None
    callback_token_file: Path | None = None
    encoding_aes_key: SecretStr | None = None
    encoding_aes_key_file: Path | None = None
    directory_interval: Duration = Field(default=300.0, ge=0, le=86400)
    """How often the whole directory is listed for ``exmail.user.*`` events (the second
    API has no change feed; docs/protocol.md, "Directory events"); 0: never."""
    directory_max_deletions: int = Field(default=5, ge=0, le=1_000_000)
    """A poll that would delete more members than this, and more than
    ``directory_max_deletion_share`` of them, is held (relay.core.listing_guard)."""
    directory_max_deletion_share: float = Field(default=0.1, ge=0, le=1)
    """The share of the stored members (0 to 1) a poll may delete before it is held;
    1 turns the guard off."""
    directory_confirm_polls: int = Field(default=3, ge=0, le=1000)
    """A held listing is committed once this many polls in a row would delete the same
    members; 0: never (only by raising the share and restarting)."""

    @model_validator(mode="after")
    def _api2(self) -> Api2TenantFields:
        if self.api == "openapi":
            given = sorted(k for k in _API2_ONLY if k in self.model_fields_set)
            if given:
                raise ValueError(
                    f'{", ".join(given)}: only for api = "api2" (this tenant is "openapi")'
                )
            return self
        wrong = [k for k in _OPENAPI_ONLY if getattr(self, k, None) is not None]
        if wrong:
            raise ValueError(
                f'{", ".join(wrong)}: only for api = "openapi" (this tenant is "api2")'
            )
        if self.corpid is None:
            raise ValueError('corpid is required with api = "api2"')
        if 0 < self.directory_interval < 1:
            raise ValueError("directory_interval must be 0 (off) or at least 1 s")
        for app in API2_APPLICATIONS:
            _take_secret(self, f"{app}_secret")
        token = _take_secret(self, "callback_token")
        key = _take_secret(self, "encoding_aes_key")
        if token is None or key is None:
            raise ValueError(
                "callback_token and encoding_aes_key (or their *_file) are required with"
                ' api = "api2" (the 新邮件提醒 application\'s callback Token and EncodingAESKey)'
            )
        if not valid_token(token.get_secret_value()):
            raise ValueError("callback_token must be 1 to 32 letters or digits")
        if not valid_encoding_aes_key(key.get_secret_value()):
            raise ValueError("encoding_aes_key must be exactly 43 characters of A-Z, a-z, 0-9")
        return self

    def api2_secret(self, app: str) -> SecretStr | None:
        """The secret of one application (a key of :data:`API2_APPLICATIONS`), or None."""
        if app not in API2_APPLICATIONS:
            raise KeyError(app)
        secret: SecretStr | None = getattr(self, f"{app}_secret")
        return secret

    def api2_secret_values(self) -> list[str]:
        """Every second-API secret value of this tenant (for the log redaction filter)."""
        values = [s.get_secret_value() for app in API2_APPLICATIONS if (s := self.api2_secret(app))]
        for maybe in (self.callback_token, self.encoding_aes_key):
            if maybe is not None:
                values.append(maybe.get_secret_value())
        return values


class CallbackSettings(Section):
    """``[callback]``: the receiver of the second API's new-mail callback (``/callback/<tenant>``
    on the ``[http]`` server, one URL per ``api = "api2"`` tenant)."""

    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=4 * 1024 * 1024)
    """A POST body larger than this is refused (413) before it is decrypted."""
    max_age: Duration = Field(default=600.0, ge=0, le=7 * 86400)
    """A callback whose ``timestamp`` is further than this from the relay's clock, in
    the past or the future, is refused as a replay (403); 0 turns the check off."""
    body_timeout: Duration = Field(default=10.0, gt=0, le=300)
    """A POST body not whole within this many seconds is refused (408): a slow sender
    holds no connection longer (Exmail's sender gives up after 5 s)."""
