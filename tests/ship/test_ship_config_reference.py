"""docs/configuration.md is generated from the settings model and must not drift.

Regenerate after changing ``relay/app/settings.py``::

    .venv/bin/python tests/ship/test_ship_config_reference.py --write

Types, defaults and constraints come from the pydantic fields of
:class:`relay.app.settings.Settings`; a field's ``description`` wins when it has one, else
the text below (so every key must be described in one of the two places).
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen  # noqa: E402
from pydantic import BaseModel, SecretStr  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402

from relay.app.settings import Settings, parse_duration  # noqa: E402

REFERENCE = ROOT / "docs" / "configuration.md"
REGENERATE = "python tests/ship/test_ship_config_reference.py --write"

DESCRIPTIONS: dict[str, str] = {
    "sharding.release_after": "Lease mode: a replica whose journal has refused writes, or "
    "whose AMQP delivery link has been down, for this long releases every shard (reason "
    "`unhealthy`) and takes none until it is healthy again (docs/leases.md).",
    "sharding.takeover_rate": "Token fetches and bootstraps per second of this replica, in "
    "every mode (a cold start and a lease takeover alike): a tenant that needs a new token "
    "or a bootstrap waits its turn (state `waiting`, `exmail_relay_takeover_queue`), one "
    "whose token is cached and fresh does not. A token bucket with a burst of a quarter "
    "second's worth. 20: 5,000 tenants over 3 replicas all listen after about 110 s, the "
    "1,900 of a killed replica listen elsewhere after about 55 s (measured), and Exmail, "
    "whose limits are unknown, sees about 20 fetches a second per replica instead of a "
    'storm (docs/leases.md, "Pacing").',
    "gateway.min_token_age": "The token service's `refresh` fetches a new token only when "
    "the current one is at least this old or the relay itself saw Exmail refuse it; "
    "otherwise it answers the current token (each fetch voids the token every holder "
    "uses). 0 turns the bound off.",
    "journal.path": "SQLite journal file (WAL mode; `-wal`/`-shm` files sit beside it). "
    "One relay per file: `run` holds a lock on `<path>.lock` beside it, and a second "
    'relay on the same file exits 1 naming the first (docs/operations.md, "One relay per '
    'journal"). The image and the chart set it to `/var/lib/exmail-relay/journal.sqlite3`.',
    "journal.max_events": "Bound on stored events; past it listeners pause (backpressure).",
    "journal.max_bytes": "Bound on the journal's event bytes; past it listeners pause.",
    "journal.retention": "How long fully delivered events are kept for replay before pruning.",
    "journal.dead_retention": "How long dead letters are kept (for `deadletters replay`) "
    "before pruning.",
    "journal.synchronous": "SQLite `synchronous`: with `full`, accepted events survive "
    "power loss (delivery outcomes may not: the event is then delivered again); `normal` "
    "survives process crashes only.",
    "journal.prune_interval": "How often delivered events past the retention are pruned.",
    "tenants.api": "Which Exmail API the tenant uses: `openapi` (the BizMail OpenApi: "
    "`client_id`/`client_secret`, a `listen` worker) or `api2` (`api.exmail.qq.com`: `corpid`, "
    "per-application secrets, new mail by callback on `[http]` `/callback/<name>`; no listen "
    'worker). docs/protocol.md, "The second API".',
    "tenants.corpid": "`api2`: the company's CorpID (admin console, 工具箱 → 应用中心); "
    "every callback's decrypted ReceiveId must equal it.",
    "tenants.contact_secret": "`api2`: secret of the 通讯录管理 application (directory).",
    "tenants.contact_secret_file": "File holding `contact_secret`.",
    "tenants.sso_secret": "`api2`: secret of the 单点登录 application (`get_login_url`).",
    "tenants.sso_secret_file": "File holding `sso_secret`.",
    "tenants.newmail_secret": "`api2`: secret of the 新邮件提醒 application (`mail/newcount`).",
    "tenants.newmail_secret_file": "File holding `newmail_secret`.",
    "tenants.option_secret": "`api2`: secret of the 功能设置 application (`useroption`).",
    "tenants.option_secret_file": "File holding `option_secret`.",
    "tenants.log_secret": "`api2`: secret of the 日志查询 application (`log/*`).",
    "tenants.log_secret_file": "File holding `log_secret`.",
    "tenants.callback_token": "`api2`, required: the callback's Token, as saved in the "
    "新邮件提醒 application (1 to 32 letters or digits; it signs every callback).",
    "tenants.callback_token_file": "File holding `callback_token`.",
    "tenants.encoding_aes_key": "`api2`, required: the callback's EncodingAESKey (exactly 43 "
    "characters of A-Z, a-z, 0-9; the AES-256 key of every callback).",
    "tenants.encoding_aes_key_file": "File holding `encoding_aes_key`.",
    "tenants.directory_interval": "`api2`: how often the whole directory is listed and "
    "diffed against the last listing for `exmail.user.*` events (the second API has no "
    'change feed; docs/protocol.md, "Directory events on the second API"); 0 turns it '
    "off, otherwise at least 1 s. Default 5 min: about 2.2 MB and 0.4 s of relay CPU per poll "
    "for 10 000 members (docs/benchmarks.md).",
    "tenants.directory_max_deletions": "`api2`: the mass-deletion guard. A poll whose "
    "difference would delete more members than this *and* more than "
    "`directory_max_deletion_share` of the stored ones is **held**: nothing of it is "
    "emitted (nor its additions and updates), the stored listing is kept, and "
    "`/status.json` (`directory.held`), `exmail_relay_directory_held_deletions` and a "
    'warning say so (docs/protocol.md, "Mass deletions are held"). 0: the share alone '
    "decides.",
    "tenants.directory_max_deletion_share": "`api2`: the share of the stored members (0 to "
    "1) one poll may delete before it is held (with `directory_max_deletions`); 0: the "
    "count alone decides, 1 turns the guard off.",
    "tenants.directory_confirm_polls": "`api2`: a held listing is committed (with the ids "
    "its events would have had) once this many polls in a row would delete the same "
    "members, the first one included: with the default interval, 10 minutes after it was "
    "first seen. An operator may confirm it at once (`exmail-relay directory confirm-held`, "
    "the admin API). 0: never by polls, only by an operator (without the admin API: raise "
    "`directory_max_deletion_share` to 1 for the tenant and restart).",
    "callback.max_body_bytes": "Largest callback POST body read; a larger one is refused "
    "(413) before it is decrypted.",
    "callback.max_age": "A callback whose `timestamp` is further than this from the relay's "
    "clock (past or future) is refused as a replay (403, `stale`); 0 turns the check off. "
    "Exmail's retries of one callback are expected within seconds.",
    "callback.body_timeout": "Seconds a callback's POST body may take to arrive whole; a "
    "slower one is refused (408, `slow-body`), so a slow sender holds no connection longer. "
    "Exmail's sender gives up after 5 s.",
    "tenants.name": "Tenant name: routing-key prefix, CloudEvent source, shard hash input.",
    "tenants.client_id": "`openapi`, required: the Exmail administrator account (OAuth2 "
    "client id).",
    "tenants.client_secret": "`openapi`, required: the interface key from the admin console.",
    "tenants.client_secret_file": "File holding `client_secret` (a mounted Secret).",
    "tenants.api_url": "API base URL (default per `api`: the BizMail OpenApi's, or "
    "`https://api.exmail.qq.com/cgi-bin/` for `api2`).",
    "tenants.token_url": "OAuth2 token URL.",
    "tenants.login_url": "SSO login page (for `sso-url`).",
    "tenants.auth_method": "How the token request sends credentials: form body or HTTP Basic.",
    "tenants.action_codes": "Which reading of user/list action codes to use: the authority "
    "document or the v1.4 revision (see spec/PROTOCOL-NOTES.md).",
    "tenants.directory_bootstrap": "With no checkpoint: `skip` starts from the current Ver "
    "silently, `snapshot` emits the whole directory as `exmail.user.added`. `api2`: the "
    "same choice for the first listing with none stored (`skip`: one "
    "`exmail.directory.changed` from 0).",
    "tenants.hold": "How long the server holds `listen` open. The client waits "
    "`hold + max(5 s, hold / 5)` (30 s by default) for an answer; none by then is a listen "
    "timeout, and readiness fails (`no answer from Exmail`). Never set it below the "
    "server's real hold.",
    "tenants.request_timeout": "Timeout of every other API request.",
    "tenants.enrich_concurrency": "Parallel `user/get` calls when enriching a directory update.",
    "tenants.max_response_bytes": "Largest answer read from Exmail. A `listen` answer"
    " counts after its over-long strings are cut (`max_field_bytes`); an answer still larger"
    ' is dropped whole and counted as `exmail_relay_listen_requests{outcome="too_large"}`.',
    "tenants.max_field_bytes": "Longest string of a `listen` answer, in bytes as sent: a"
    " longer one (a 5 MB summary) is cut there as the answer streams in, the mail is"
    " delivered with `data.truncated` naming the field, and"
    " `exmail_relay_fields_truncated_total` counts it. The other mails of that answer are"
    " not affected.",
    "tenants.enabled": "Serve this tenant.",
    "tenants.replica_header": "Send `X-Relay-Replica: <replica id>` on `listen`, for the "
    "emulator only (its listen log tells replicas apart by it). Leave off against the real "
    "Exmail, which should not learn the relay's pod names.",
    "amqp.enabled": "Deliver to RabbitMQ.",
    "amqp.url": "Broker URL, `amqp://` or `amqps://` (secret).",
    "amqp.url_file": "File holding `url`.",
    "amqp.exchange": "Durable topic exchange the events are published to.",
    "amqp.exchange_passive": "Only check that the exchange exists; do not declare it.",
    "amqp.declare_queue": "Also declare a durable queue bound to the exchange, so nothing "
    "published is unroutable.",
    "amqp.queue": "Name of that queue.",
    "amqp.queue_type": "Type of that queue.",
    "amqp.binding_key": "Binding key of that queue.",
    "amqp.max_in_flight": "Unconfirmed publishes allowed at once.",
    "amqp.retry_max": "Cap of the reconnect backoff.",
    "amqp.heartbeat": "AMQP heartbeat in seconds (negotiated with the broker): a link "
    "with no frame for `(heartbeat + 1) * 3` s is dropped and reconnected (a stalled, "
    "idle link: about 20 s with the default). Overrides a `heartbeat` in `url`.",
    "amqp.content_mode": "How each message carries its CloudEvent: `structured`, the whole "
    "document as the body (`application/cloudevents+json`), or `binary`, `data` as the "
    "body (`application/json`) and the other attributes as application headers "
    "(docs/events.md).",
    "amqp.header_prefix": "Prefix of the attribute headers in binary mode: `cloudEvents_` "
    "(the AMQP binding's preferred form) or `cloudEvents:` (what Spring Cloud Function "
    "reads).",
    "amqp.confirm_timeout": "Age limit on unconfirmed publishes: past it the link counts "
    "as stalled, readiness fails (`publish not confirmed within N s`), the connection is "
    "dropped and reconnected, and the deliveries stay pending (sent again, never dead). "
    "The time a RabbitMQ resource alarm blocks the link does not count.",
    "webhooks.name": "Endpoint name: the sink label `webhook:<name>`.",
    "webhooks.url": "Receiver URL (http or https).",
    "webhooks.secret": "Standard Webhooks signing secret(s), `whsec_` + base64 of 24-64 "
    "bytes; several while rotating.",
    "webhooks.secret_file": "File holding the secret(s), one per line.",
    "webhooks.types": "Event type filters: `*`, a prefix such as `exmail.mail.*`, or a type.",
    "webhooks.tenants": "Only these tenants' events (empty: all).",
    "webhooks.timeout": "Per-request timeout.",
    "webhooks.max_in_flight": "Concurrent requests to this endpoint.",
    "webhooks.rate_limit": "Requests per second at most (0: unlimited).",
    "webhooks.retry_schedule": "Delays between attempts; after the last one the event "
    "becomes a dead letter.",
    "webhooks.jitter": "Relative random spread applied to each retry delay.",
    "webhooks.ordered": "Deliver one at a time in journal order (implies no parallelism).",
    "webhooks.ca_bundle": "PEM bundle to verify the receiver's certificate.",
    "webhooks.enabled": "Deliver to this endpoint.",
    "http.enabled": "Serve health, metrics and the status page.",
    "http.host": "Listen address. The image and the chart set `0.0.0.0`.",
    "http.port": "Listen port (0: any free port).",
    "http.auth_token": "Bearer token for the status page and `/status.json`, and for the "
    "probes and `/metrics` with `protect_probes` (secret).",
    "http.auth_token_file": "File holding `auth_token`, or several during a rotation: one "
    "per line, `NAME TOKEN` or `TOKEN`, `#` comments; every one accepted; read again when it "
    'changes (docs/operations.md, "Rotating the ops and admin tokens"). Wins over '
    "`auth_token`.",
    "http.basic_user": "HTTP Basic user for the status page and metrics.",
    "http.basic_password": "HTTP Basic password (secret).",
    "http.protect_probes": "Also require authentication on `/livez`, `/readyz` and `/metrics`.",
    "http.admin_token": "Bearer token of the admin API (`/admin/v1/`, docs/operations.md), "
    "at least 16 characters; unset: the admin API answers 404 (secret). Never a client key.",
    "http.admin_token_file": "File holding `admin_token` (a mounted Secret), or several "
    "during a rotation: one per line, `NAME TOKEN` or `TOKEN` (at least 16 characters each), "
    "`#` comments; every one accepted, the first sent to the other replicas, the name shown in "
    'audit lines; read again when it changes (docs/operations.md, "Rotating the ops and '
    'admin tokens"). Wins over `admin_token`.',
    "log.format": "`auto`: JSON lines when stderr is not a TTY, text when it is.",
    "log.level": "Minimum level logged.",
    "status.show_content": "Show mail subjects and summaries on the status page.",
    "status.recent_events": "How many recent events the status page lists.",
    "console.enabled": "Print one JSON line per event on stdout.",
    "sharding.mode": "`lease`: replicas share the shards through leases on the broker and "
    "take over from each other within seconds; `static`: replica `index` of `count` runs its "
    "fixed shard. Unset: `lease` when `[amqp]` is enabled and neither `count` nor `index` is "
    "set, else `static`. `lease` without `[amqp]` is an error.",
    "sharding.count": "Static mode: number of shards (replicas). A tenant belongs to shard "
    "`crc32(name) % count`.",
    "sharding.index": "Static mode: this replica's shard; unset: the ordinal at the end of the "
    "host name.",
    "sharding.shards": "Lease mode: number of shards, a tenant belongs to shard "
    "`crc32(name) % shards`. Set once, the same on every replica; never change it.",
    "sharding.replica_id": "Lease mode: this replica's name among the others (unique), a DNS "
    "label (RFC 1123: `a-z`, `0-9`, inner `-`, at most 63 characters; peers build "
    "`[gateway] peer_url` from it); unset: the host name, which must then be one.",
    "sharding.heartbeat": "Lease mode: heartbeat of the lease connection in seconds; a dead "
    "replica's shards move after about 3 heartbeats (a clean death: about 1 s).",
    "sharding.prefix": "Lease mode: prefix of the broker names (`<prefix>.lease.<n>`, "
    "`<prefix>.presence`, `<prefix>.member.<id>`, `<prefix>.checkpoint.<n>`); the same on "
    "every replica, and its own for every deployment on a vhost (the Helm chart derives it "
    "from the release name).",
    "sharding.secret": "Lease mode (required there): the deployment secret, at least 16 "
    "characters, the same on every replica; it signs presence and checkpoint messages "
    "(HMAC-SHA256), and unsigned or badly signed ones are dropped. A list while rotating: "
    "the first signs, any verifies. Generate one with `openssl rand -base64 32`.",
    "sharding.secret_file": "File holding the deployment secret(s), one per line (a mounted "
    "Secret; the Helm chart generates one).",
    "shutdown.timeout": "How long in-flight deliveries may drain on SIGTERM; keep it below "
    "the pod's termination grace period.",
    "clients.name": "Client name: in metrics (`client` label), audit lines and the status page.",
    "clients.key": "Bearer key(s) of this client (at least 16 characters each); list several "
    "to rotate a key without downtime. Never logged or shown.",
    "clients.key_file": "File holding more keys, one per line (a mounted Secret).",
    "clients.tenants": "Tenants this client may use; empty means every tenant.",
    "clients.scopes": "What the client may do: `sso` (login URLs, `mail/authkey`), `read` "
    "(directory reads, unread counts), `write` (provisioning), `token` (the token service).",
    "clients.rate": "Sustained calls per second (token bucket); over it: 429 with Retry-After.",
    "clients.burst": "Calls the bucket allows at once after an idle spell.",
    "clients.link_secret": "Secret that signs this client's browser SSO links (`/sso/...`, "
    "with scope `sso`, for the client's tenants only); unset: no signed links for this client.",
    "clients.link_secret_file": "File holding `link_secret` (a mounted Secret).",
    "clients.single_use": "Signed SSO links of this client work once (remembered until they "
    "expire).",
    "gateway.tenant_concurrency": "Gateway calls to one tenant's Exmail at once (all clients "
    "together); `listen` is never among them (its own connection pool).",
    "gateway.queue_timeout": "How long a call waits for a free slot of its tenant before 503 "
    "with `Retry-After: 1`.",
    "gateway.max_body_bytes": "Largest request body the gateway reads (every route, the "
    "token service and forwarding), always whole: a larger `Content-Length` is 413 before "
    "reading, a chunked body growing past it 413, a body shorter than its `Content-Length` "
    "400 and never sent on.",
    "gateway.sso_expires_in": "`expires_in` of `POST /v1/tenants/{tenant}/sso`: how long the "
    "login URL is honoured (Exmail documents no authkey lifetime: set what your tenant honours).",
    "gateway.max_link_ttl": "Longest a signed SSO link (`/sso/...`) may still have to live: "
    "one whose `exp` is further ahead (plus 30 s of clock skew) is refused like a tampered "
    "one. `exmail-relay sso-link --ttl` may not exceed it.",
    "gateway.peer_url": "With `[sharding] count > 1`: URL template of the replica `{index}` "
    "(e.g. `http://exmail-relay-{index}.exmail-relay-headless:8080`); a call for a tenant "
    "another replica owns is forwarded there. Unset: such calls answer 421 naming the owner.",
    "gateway.forward_timeout": "Whole round trip of a forwarded call; past it: 504.",
}

HEADER = """\
# Configuration reference

<!-- Generated from relay/app/settings.py by {regenerate}; do not edit by hand. -->

The relay reads a TOML file (`--config FILE`, or `$RELAY_CONFIG`), then environment
variables `RELAY_<SECTION>__<KEY>` override it (`RELAY_HTTP__PORT=9090`; list sections
such as `RELAY_TENANTS` take JSON). Every secret can come from a file instead
(`client_secret_file`, `url_file`, `secret_file`, `auth_token_file`), which is how
Kubernetes Secrets are mounted. Unknown keys are errors. An invalid configuration stops
startup with one line per problem, naming the key.

Durations accept a number of seconds or a string with a unit: `500ms`, `30s`, `5m`,
`24h`, `1d`.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(getattr(m, "func", None) is parse_duration for m in args[1:]):
            return "duration"
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        optional = " (optional)" if type(None) in args else ""
        return " or ".join(names) + optional
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if annotation is SecretStr:
        return "secret string"
    if annotation is Path:
        return "path"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        annotation, str(annotation)
    )


def _field_type(info: FieldInfo) -> str:
    # pydantic moves a field's top-level Annotated metadata into info.metadata.
    if any(getattr(m, "func", None) is parse_duration for m in info.metadata):
        return "duration"
    return _type_name(info.annotation)


def _constraints(info: FieldInfo) -> str:
    parts = []
    symbols = ((Gt, "gt", "> "), (Ge, "ge", "≥ "), (Lt, "lt", "< "), (Le, "le", "≤ "))
    for meta in info.metadata:
        for kind, attr, symbol in symbols:
            if isinstance(meta, kind):
                parts.append(f"{symbol}{getattr(meta, attr)}")
        if isinstance(meta, MinLen):
            parts.append(f"length ≥ {meta.min_length}")
        if isinstance(meta, MaxLen):
            parts.append(f"length ≤ {meta.max_length}")
        pattern = getattr(meta, "pattern", None)
        if isinstance(pattern, str):
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path | str):
        return f'`"{value}"`'
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else f"{v:g}" for v in value) + "]`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _section_model(info: FieldInfo) -> tuple[type[BaseModel], bool]:
    annotation = info.annotation
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    assert isinstance(annotation, type)
    assert issubclass(annotation, BaseModel)
    return annotation, False


def render_reference() -> str:
    lines = [HEADER.format(regenerate=f"`{REGENERATE}`")]
    for section, section_info in Settings.model_fields.items():
        model, is_list = _section_model(section_info)
        title = f"[[{section}]]" if is_list else f"[{section}]"
        doc = inspect.cleandoc(model.__doc__ or "").split("\n\n")[0].replace("\n", " ")
        doc = doc.replace("``", "`")
        env = (
            f"`RELAY_{section.upper()}` (a JSON list)"
            if is_list
            else (f"`RELAY_{section.upper()}__<KEY>`")
        )
        lines += [f"## `{title}`", "", doc, "", f"Environment: {env}.", ""]
        lines += ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
        for key, info in model.model_fields.items():
            description = info.description or DESCRIPTIONS.get(f"{section}.{key}")
            assert description, f"{section}.{key}: describe it (Field description or DESCRIPTIONS)"
            row = [f"`{key}`", _field_type(info), _default(info), _constraints(info)]
            lines.append("| " + " | ".join([*row, description]) + " |")
        lines.append("")
    return "\n".join(lines)


def test_every_key_is_described() -> None:
    described = set()
    for section, info in Settings.model_fields.items():
        for key, field in _section_model(info)[0].model_fields.items():
            assert field.description or f"{section}.{key}" in DESCRIPTIONS, f"{section}.{key}"
            described.add(f"{section}.{key}")
    assert set(DESCRIPTIONS) - described == set(), "DESCRIPTIONS names keys that no longer exist"


def test_reference_covers_every_section() -> None:
    text = render_reference()
    for section in Settings.model_fields:
        assert f"[{section}]" in text
    assert "| `retention` | duration | `86400` |" in text
    assert '| `queue_type` | `"quorum"` \\| `"classic"` | `"quorum"` |' in text


def test_configuration_md_matches_the_settings_model() -> None:
    expected = render_reference()
    actual = REFERENCE.read_text() if REFERENCE.exists() else ""
    assert actual == expected, f"docs/configuration.md is stale; regenerate it with: {REGENERATE}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        REFERENCE.write_text(render_reference())
        print(f"wrote {REFERENCE.relative_to(ROOT)}")
    else:
        print(render_reference(), end="")
