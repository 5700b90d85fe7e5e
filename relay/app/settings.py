"""Settings: the configuration's models, and nothing that reads a file or the process.

Every section of the TOML file is a frozen pydantic model here; :class:`Settings` is
the whole. :mod:`relay.app.loader` reads the TOML file, the environment variables
``RELAY_<SECTION>__<KEY>`` and the secret files, and validates the result against
these models; everything below the app layer receives explicit keyword arguments built
from them (:mod:`relay.app.wiring`). Secrets are :class:`~pydantic.SecretStr`, so they
never show in a repr, a log line or an error message.

The ``*_file`` keys (``client_secret_file``, ``url_file``, ...) are read by the model
validators (Kubernetes Secrets are mounted as files).

An invalid configuration raises :class:`ConfigError`, whose message has one line per
problem, each naming the key (``tenants[0].client_secret: ...``).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from relay.app.api2_settings import API2_URL, Api2TenantFields, CallbackSettings
from relay.app.fields import LEASE_MODE_NEEDS_SIGNING, ConfigError, Duration, parse_duration
from relay.app.fields import Section as _Section
from relay.app.fields import check_http_url as _check_http_url
from relay.app.fields import check_replica_id as _check_replica_id
from relay.app.fields import check_webhook_secret as _check_webhook_secret
from relay.app.fields import read_secret_file as _read_secret_file
from relay.app.fields import secret_lines as _secret_lines
from relay.app.fields import secret_list as _secret_list
from relay.app.fields import unique as _unique
from relay.app.http_settings import HttpSettings
from relay.core.amqp_message import ContentMode, HeaderPrefix
from relay.core.envelope import MIN_SECRET_LENGTH
from relay.core.links import DEFAULT_MAX_TTL
from relay.core.shards import DEFAULT_SHARDS, shard_of

__all__ = [
    "AmqpSettings",
    "CallbackSettings",
    "ClientSettings",
    "ConfigError",
    "ConsoleSettings",
    "GatewaySettings",
    "HttpSettings",
    "JournalSettings",
    "LogSettings",
    "Settings",
    "ShardingSettings",
    "StatusSettings",
    "TenantSettings",
    "WebhookSettings",
    "parse_duration",
    "shard_of",
]

DEFAULT_API_URL = "http://openapi.exmail.qq.com:12211/openapi/"
DEFAULT_TOKEN_URL = "https://exmail.qq.com/cgi-bin/token"  # noqa: S105 -- a URL, not a password
DEFAULT_LOGIN_URL = "https://exmail.qq.com/cgi-bin/login"

# Standard Webhooks' recommended schedule after the first attempt.
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class JournalSettings(_Section):
    """``[journal]``: the embedded SQLite journal."""

    path: Path = Path("exmail-relay.sqlite3")
    max_events: int = Field(default=1_000_000, gt=0)
    max_bytes: int = Field(default=1 << 30, gt=0)
    retention: Duration = 86400.0
    dead_retention: Duration = 7 * 86400.0
    synchronous: Literal["full", "normal"] = "full"
    prune_interval: Duration = 60.0


class TenantSettings(Api2TenantFields):
    """One ``[[tenants]]`` entry: an Exmail company, served by one long-poll listener
    (``api = "openapi"``) or by its callback (``api = "api2"``: relay.app.api2_settings)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    client_id: str | None = Field(default=None, min_length=3)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    api_url: str = DEFAULT_API_URL
    token_url: str = DEFAULT_TOKEN_URL
    login_url: str = DEFAULT_LOGIN_URL
    auth_method: Literal["form", "basic"] = "form"
    action_codes: Literal["authority", "v1.4"] = "authority"
    directory_bootstrap: Literal["skip", "snapshot"] = "skip"
    hold: Duration = Field(default=25.0, gt=0)
    request_timeout: Duration = Field(default=10.0, gt=0)
    enrich_concurrency: int = Field(default=8, ge=1, le=64)
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024)
    # A listen answer's strings over this are cut, not the answer dropped (data.truncated).
    max_field_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    enabled: bool = True
    replica_header: bool = False
    """``X-Relay-Replica`` on ``listen``, for the emulator's listen log only (off by default)."""

    @field_validator("api_url", "token_url", "login_url")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        return _check_http_url(value, info.field_name)

    @model_validator(mode="after")
    def _secret(self) -> TenantSettings:
        if self.api == "api2":
            if "api_url" not in self.model_fields_set:
                object.__setattr__(self, "api_url", API2_URL)
            return self
        if self.client_id is None:
            raise ValueError('client_id is required (or set api = "api2" and its keys)')
        if self.client_secret_file is not None:
            if self.client_secret is not None:
                raise ValueError("give client_secret or client_secret_file, not both")
            secret = _read_secret_file(self.client_secret_file, "client_secret_file")
            object.__setattr__(self, "client_secret", SecretStr(secret))
        if self.client_secret is None or not self.client_secret.get_secret_value():
            raise ValueError("client_secret (or client_secret_file) is required")
        return self

    @property
    def listen_timeout(self) -> float:
        """Read timeout for ``listen``: a margin above the hold (30 s for the default)."""
        return self.hold + max(5.0, self.hold * 0.2)

    def secret(self) -> SecretStr:
        return self.credentials()[1]

    def credentials(self) -> tuple[str, SecretStr]:
        """``(client_id, client_secret)`` of a BizMail OpenApi tenant; ConfigError for api2."""
        if self.client_id is None or self.client_secret is None:
            raise ConfigError(f'tenants: {self.name!r} uses api = "api2", not the BizMail OpenApi')
        return self.client_id, self.client_secret


class AmqpSettings(_Section):
    """``[amqp]``: the RabbitMQ sink."""

    enabled: bool = False
    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    url_file: Path | None = None
    exchange: str = Field(default="exmail.events", min_length=1)
    exchange_passive: bool = False
    declare_queue: bool = True
    queue: str = Field(default="exmail.events", min_length=1)
    queue_type: Literal["quorum", "classic"] = "quorum"
    binding_key: str = "#"
    max_in_flight: int = Field(default=256, ge=1, le=10_000)
    retry_max: Duration = 30.0
    # A stalled link is dropped after (heartbeat + 1) * 3 s without a frame (idle) or
    # confirm_timeout (+ up to 1 s) with a publish unconfirmed: both well under 30 s.
    heartbeat: int = Field(default=5, ge=1, le=300)
    confirm_timeout: Duration = Field(default=15.0, gt=0, le=600)
    # How a message carries its CloudEvent (relay.core.amqp_message): the whole document
    # as the body, or data as the body and the attributes as application headers.
    content_mode: ContentMode = "structured"
    header_prefix: HeaderPrefix = "cloudEvents_"

    @model_validator(mode="after")
    def _url(self) -> AmqpSettings:
        if self.url_file is not None:
            url = _read_secret_file(self.url_file, "url_file")
            object.__setattr__(self, "url", SecretStr(url))
        scheme = urlsplit(self.url.get_secret_value()).scheme
        if scheme not in ("amqp", "amqps"):
            raise ValueError("url must start with amqp:// or amqps://")
        return self


class WebhookSettings(_Section):
    """One ``[[webhooks]]`` endpoint."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    url: str
    secret: Annotated[list[SecretStr], BeforeValidator(_secret_list)] = Field(default_factory=list)
    secret_file: Path | None = None
    types: list[str] = Field(default_factory=lambda: ["*"])
    tenants: list[str] = Field(default_factory=list)
    timeout: Duration = Field(default=15.0, gt=0)
    max_in_flight: int = Field(default=4, ge=1, le=1000)
    rate_limit: float = Field(default=0.0, ge=0)
    retry_schedule: list[Duration] = Field(default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE))
    jitter: float = Field(default=0.2, ge=0, lt=1)
    ordered: bool = False
    ca_bundle: Path | None = None
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value, "url")

    @model_validator(mode="after")
    def _secrets(self) -> WebhookSettings:
        secrets = list(self.secret)
        if self.secret_file is not None:
            text = _read_secret_file(self.secret_file, "secret_file")
            secrets.extend(SecretStr(line.strip()) for line in text.splitlines() if line.strip())
        if not secrets:
            raise ValueError("secret (or secret_file) is required")
        for index, secret in enumerate(secrets):
            _check_webhook_secret(secret.get_secret_value(), index)
        object.__setattr__(self, "secret", secrets)
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ValueError(f"ca_bundle: {self.ca_bundle} is not a file")
        return self


class LogSettings(_Section):
    """``[log]``: JSON lines off a TTY, readable text on one."""

    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class StatusSettings(_Section):
    """``[status]``: what the status page may show."""

    show_content: bool = False
    recent_events: int = Field(default=50, ge=0, le=1000)


class ConsoleSettings(_Section):
    """``[console]``: one JSON line per event on stdout."""

    enabled: bool = False


class ShardingSettings(_Section):
    """``[sharding]``: split tenants between replicas.

    ``mode = "lease"``: tenants hash into ``shards`` fixed shards, and each shard is run
    by the replica holding its lease on the broker (``[amqp]``); replicas come and go
    live. ``mode = "static"``: replica ``index`` of ``count`` runs the tenants of its
    fixed shard. Unset, the mode is ``lease`` when ``[amqp]`` is enabled, and ``static``
    otherwise or when ``count`` or ``index`` is set (a configuration from before leases
    keeps its meaning): see :meth:`Settings.sharding_mode`. ``index`` defaults to the
    host name's ordinal (``exmail-relay-2`` -> 2) when ``count`` > 1 (a StatefulSet pod).
    """

    mode: Literal["static", "lease"] | None = None
    count: int = Field(default=1, ge=1, le=1024)
    index: int | None = Field(default=None, ge=0)
    shards: int = Field(default=DEFAULT_SHARDS, ge=1, le=1024)
    replica_id: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    heartbeat: int = Field(default=5, ge=1, le=60)
    prefix: str = Field(default="exmail.relay", min_length=1, max_length=100)
    release_after: Duration = Field(default=30.0, gt=0, le=3600)  # unhealthy: shards go
    takeover_rate: float = Field(default=20.0, gt=0, le=100_000)  # token fetches+bootstraps/s
    # The deployment secret that signs presence and checkpoint messages (lease mode):
    # several during a rotation (the first signs, any verifies), one per line in the file.
    secret: Annotated[list[SecretStr], BeforeValidator(_secret_list)] = Field(default_factory=list)
    secret_file: Path | None = None

    @model_validator(mode="after")
    def _secrets(self) -> ShardingSettings:
        secrets = _secret_lines(self.secret, self.secret_file, min_length=MIN_SECRET_LENGTH)
        object.__setattr__(self, "secret", secrets)
        return self

    def resolved_replica_id(self, hostname: str | None = None) -> str:
        if self.replica_id is not None:
            return self.replica_id
        return hostname if hostname is not None else socket.gethostname()

    def lease_replica_id(self, hostname: str | None = None) -> str:
        """The replica id in lease mode, a DNS label (peers build a URL from it)."""
        return _check_replica_id(self.resolved_replica_id(hostname))

    def resolved_index(self, hostname: str | None = None) -> int:
        if self.count == 1:
            return 0
        if self.index is not None:
            index = self.index
        else:
            host = hostname if hostname is not None else socket.gethostname()
            match = re.search(r"-(\d+)$", host)
            if match is None:
                raise ConfigError(
                    f"sharding.index: not set and host name {host!r} ends in no ordinal"
                )
            index = int(match.group(1))
        if index >= self.count:
            raise ConfigError(f"sharding.index: {index} is not below sharding.count {self.count}")
        return index


class ShutdownSettings(_Section):
    """``[shutdown]``: how long in-flight deliveries may drain on SIGTERM."""

    timeout: Duration = Field(default=10.0, gt=0, le=600)


class ClientSettings(_Section):
    """One ``[[clients]]`` entry: an OA system allowed to use the API gateway (``/v1/``).

    ``key`` is a list so a key can be rotated: every listed key (and every line of
    ``key_file``) is accepted until it is removed.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    key: Annotated[list[SecretStr], BeforeValidator(_secret_list)] = Field(default_factory=list)
    key_file: Path | None = None
    tenants: list[str] = Field(default_factory=list)
    scopes: list[Literal["sso", "read", "write", "token"]] = Field(default_factory=list)
    rate: float = Field(default=10.0, gt=0)
    burst: int = Field(default=20, ge=1)
    link_secret: SecretStr | None = None
    link_secret_file: Path | None = None
    single_use: bool = False

    @model_validator(mode="after")
    def _keys(self) -> ClientSettings:
        keys = list(self.key)
        if self.key_file is not None:
            text = _read_secret_file(self.key_file, "key_file")
            keys.extend(SecretStr(line.strip()) for line in text.splitlines() if line.strip())
        if not keys:
            raise ValueError("key (or key_file) is required")
        for index, key in enumerate(keys):
            if len(key.get_secret_value()) < 16:
                raise ValueError(f"key #{index + 1} must be at least 16 characters")
        object.__setattr__(self, "key", keys)
        if self.link_secret_file is not None:
            if self.link_secret is not None:
                raise ValueError("give link_secret or link_secret_file, not both")
            secret = _read_secret_file(self.link_secret_file, "link_secret_file")
            object.__setattr__(self, "link_secret", SecretStr(secret))
        if self.link_secret is not None and len(self.link_secret.get_secret_value()) < 16:
            raise ValueError("link_secret must be at least 16 characters")
        return self


class GatewaySettings(_Section):
    """``[gateway]``: limits of the API gateway (the ``/v1/`` routes, on with ``[[clients]]``)."""

    tenant_concurrency: int = Field(default=8, ge=1, le=256)
    queue_timeout: Duration = Field(default=2.0, ge=0, le=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    sso_expires_in: int = Field(default=300, ge=1, le=3600)
    min_token_age: Duration = Field(default=60.0, ge=0, le=3600)  # borrowers' refresh bound
    peer_url: str | None = None
    """Where another replica answers: ``{index}`` is its ordinal (static mode, e.g.
    ``http://exmail-relay-{index}.exmail-relay:8080``), ``{replica}`` its replica id
    (lease mode, the pod's name); a request for a tenant another replica owns is
    forwarded there. Unset: such requests answer 421 naming the owner."""
    forward_timeout: Duration = Field(default=15.0, gt=0, le=300)
    max_link_ttl: Duration = Field(default=float(DEFAULT_MAX_TTL), ge=1, le=7 * 86400)
    """Signed SSO links whose ``exp`` is further ahead (plus the skew) are refused."""

    @field_validator("peer_url")
    @classmethod
    def _peer_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "{index}" not in value and "{replica}" not in value:
            raise ValueError(
                "peer_url must hold {index} (static: the owner's ordinal) or {replica}"
                " (lease: the owner's replica id)"
            )
        probe = value.replace("{index}", "0").replace("{replica}", "relay-0")
        return _check_http_url(probe, "peer_url") and value


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    journal: JournalSettings = JournalSettings()
    tenants: list[TenantSettings] = Field(default_factory=list)
    amqp: AmqpSettings = AmqpSettings()
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    status: StatusSettings = StatusSettings()
    console: ConsoleSettings = ConsoleSettings()
    sharding: ShardingSettings = ShardingSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    clients: list[ClientSettings] = Field(default_factory=list)
    gateway: GatewaySettings = GatewaySettings()
    callback: CallbackSettings = CallbackSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Nothing is read from the process here: relay.app.loader reads the file and
        # the environment it is given and validates the merged values (model_validate).
        return (init_settings,)

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        _unique([t.name for t in self.tenants], "tenants", "name")
        _unique([w.name for w in self.webhooks], "webhooks", "name")
        _unique([t.client_id for t in self.tenants if t.client_id], "tenants", "client_id")
        known = {t.name for t in self.tenants}
        for index, hook in enumerate(self.webhooks):
            unknown = sorted(set(hook.tenants) - known)
            if unknown:
                raise ValueError(f"webhooks[{index}].tenants: unknown tenant(s) {unknown}")
        _unique([c.name for c in self.clients], "clients", "name")
        for index, client in enumerate(self.clients):
            unknown = sorted(set(client.tenants) - known)
            if unknown:
                raise ValueError(f"clients[{index}].tenants: unknown tenant(s) {unknown}")
        keys = [k.get_secret_value() for c in self.clients for k in c.key]
        if len(keys) != len(set(keys)):
            raise ValueError("clients: two entries share a key (each key names one client)")
        if self.sharding.mode == "lease" and not self.amqp.enabled:
            raise ValueError('sharding.mode = "lease" needs [amqp] enabled (leases live there)')
        if self.sharding_mode == "lease" and not self.sharding.secret:
            raise ValueError(LEASE_MODE_NEEDS_SIGNING)
        return self

    @property
    def sharding_mode(self) -> Literal["static", "lease"]:
        """``[sharding] mode``, or its default: ``lease`` when ``[amqp]`` is enabled and
        neither ``count`` nor ``index`` is set, ``static`` otherwise."""
        s = self.sharding
        if s.mode is not None:
            return s.mode
        legacy = "count" in s.model_fields_set or "index" in s.model_fields_set
        return "lease" if self.amqp.enabled and not legacy else "static"

    def tenant(self, name: str | None = None) -> TenantSettings:
        """The named tenant, or the only/first one when ``name`` is None."""
        if not self.tenants:
            raise ConfigError("tenants: no [[tenants]] entry is configured")
        if name is None:
            return self.tenants[0]
        for tenant in self.tenants:
            if tenant.name == name:
                return tenant
        names = ", ".join(t.name for t in self.tenants)
        raise ConfigError(f"tenants: no tenant named {name!r} (configured: {names})")

    def shard_tenants(self, hostname: str | None = None) -> list[TenantSettings]:
        """The enabled tenants this replica serves (lease mode: every enabled tenant; the
        held shards decide which of them run)."""
        if self.sharding_mode == "lease":
            return [t for t in self.tenants if t.enabled]
        count = self.sharding.count
        index = self.sharding.resolved_index(hostname)
        mine = [t for t in self.tenants if t.enabled]
        if count == 1:
            return mine
        return [t for t in mine if shard_of(t.name, count) == index]
