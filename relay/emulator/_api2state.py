"""The second API's world: tenants, per-app tokens, mailboxes, SSO keys, logs. No I/O.

Why it is shaped like this: as in ``_state`` for the first API, everything the second
API decides lives here (and in ``_api2directory``) as plain synchronous methods; the
aiohttp layer (``_api2server``) parses a request into a dict, calls one method and
renders the answer or the ``Api2Error`` as HTTP 200 ``{"errcode", "errmsg"}``.

Tokens (notes §2, §11 q3). Each ``gettoken`` names a (corpid, app) by the app's secret;
a token works only on its app's endpoints. What a second ``gettoken`` does is unknown, so
it is a setting, ``token_rotation``:

- ``reuse_until_expiry`` (default, WeCom's documented rule): while the current token of
  (corpid, app) is valid, ``gettoken`` answers that same token with its remaining
  lifetime; once it expired, a new one;
- ``invalidate_previous``: every ``gettoken`` issues a new token and the previous one of
  the same (corpid, app) stops working (40014), like the first API's one-token rule.

Refusals: no token 41001; unknown or superseded 40014 (``invalid_token_errcode``: 40001,
"invalid credential", is the other code the sources give for it); expired 42001; another
app's token 48002 ("api forbidden": the emulator's choice, WeCom's code for it). Time comes
from an injectable ``clock``; ``expire_tokens`` ends tokens at once for tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from . import _api2directory as directory
from ._api2directory import Params, integer, text
from ._api2model import ROOT_ID, Department2, Group2, Mail2, Member2, MessageHook, Tenant2, Token2
from ._api2seed import Api2TenantSeed
from ._errors import Api2Error, EmulatorError

__all__ = ["TOKEN_ROTATIONS", "Api2State", "Login2Refused", "TokenRotation"]

TokenRotation = Literal["reuse_until_expiry", "invalidate_previous"]
TOKEN_ROTATIONS: tuple[TokenRotation, ...] = get_args(TokenRotation)
CHINA = dt.timezone(dt.timedelta(hours=8))  # Exmail's dates are Beijing dates
_KEPT_TOKENS = 100_000


class Login2Refused(EmulatorError):
    """A second-API SSO login was refused; the message says why (the 403 page)."""


@dataclass(slots=True)
class _AuthKey:
    corpid: str
    userid: str
    expires: float
    used: bool = False


def _mask(secret: str) -> str:
    return secret[:4] + "…"


class Api2State:
    """Every second-API tenant the emulator serves, and the API's rules."""

    def __init__(
        self,
        tenants: Iterable[Api2TenantSeed] = (),
        *,
        token_ttl: int = 7200,
        token_rotation: TokenRotation = "reuse_until_expiry",  # noqa: S107 - a mode, not a secret
        login_ttl: float = 300.0,
        max_log_days: int = 92,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seeds = tuple(tenants)
        self.token_ttl = token_ttl
        self.token_rotation = self._rotation(token_rotation)
        self.invalid_token_errcode = 40014  # or 40001 (see the module docstring)
        self.login_ttl = login_ttl
        self.max_log_days = max_log_days
        self.clock = clock
        self.tenants: dict[str, Tenant2] = {}
        self.on_mail: list[MessageHook] = []  # every tenant's; each tenant has its own too
        self.on_unread: list[MessageHook] = []
        self.token_fetches: Counter[tuple[str, str]] = Counter()
        self._by_domain: dict[str, Tenant2] = {}
        self._tokens: dict[str, Token2] = {}
        self._current: dict[tuple[str, str], str] = {}
        self._authkeys: dict[str, _AuthKey] = {}
        self.reset()

    def __repr__(self) -> str:
        return f"<Api2State tenants={len(self.tenants)} token_rotation={self.token_rotation}>"

    @staticmethod
    def _rotation(value: str) -> TokenRotation:
        if value not in TOKEN_ROTATIONS:
            raise ValueError(f"token_rotation must be one of {list(TOKEN_ROTATIONS)}")
        return value

    def set_token_rotation(self, value: str) -> None:
        self.token_rotation = self._rotation(value)

    # -- tenants -----------------------------------------------------------------------------

    def reset(self, *, empty: bool = False) -> None:
        """Back to the seed (or to nothing): directory, mailboxes, tokens, keys, logs."""
        self.tenants.clear()
        self._by_domain.clear()
        self._tokens.clear()
        self._current.clear()
        self._authkeys.clear()
        self.token_fetches.clear()
        if not empty:
            for seed in self.seeds:
                self.add_tenant(seed)

    def add_tenant(self, seed: Api2TenantSeed) -> Tenant2:
        if seed.corpid in self.tenants:
            raise EmulatorError(f"a tenant with corpid {seed.corpid!r} exists")
        taken = [d for d in seed.domains if d in self._by_domain]
        if taken:
            raise EmulatorError(f"domain {taken[0]!r} belongs to another tenant")
        tenant = Tenant2(corpid=seed.corpid, secrets=dict(seed.secrets), domains=seed.domains)
        tenant.callback = seed.callback
        tenant.name = seed.name or seed.corpid
        tenant.departments[ROOT_ID] = Department2(ROOT_ID, tenant.name, 0)
        by_path = {"": ROOT_ID}
        for d in seed.departments:
            parent, _, name = d.path.rpartition("/")
            if d.id is None:
                made = directory.new_department(tenant, name, by_path[parent], d.order)
            else:
                made = tenant.departments[d.id] = Department2(d.id, name, by_path[parent], d.order)
            by_path[d.path] = made.id
        now = int(self.clock())
        for u in seed.users:
            member = Member2(
                userid=u.userid,
                name=u.name,
                department=[by_path[p] for p in u.departments] or [ROOT_ID],
                position=u.position,
                mobile=u.mobile,
                tel=u.tel,
                extid=u.extid,
                gender=u.gender,
                enable=u.enable,
                slaves=list(u.slaves),
            )
            for n in range(u.unread):
                member.mails.append(
                    Mail2(_mail_id(), f"postmaster@{seed.domains[0]}", f"#{n}", now)
                )
            tenant.members[u.userid] = member
            for slave in u.slaves:
                tenant.slaves[slave] = u.userid
        for g in seed.groups:
            users = [u for u in g.userlist if u in tenant.members]
            tenant.groups[g.groupid] = Group2(g.groupid, g.groupname, g.allow_type, users)
        self.tenants[tenant.corpid] = tenant
        for domain in tenant.domains:
            self._by_domain[domain] = tenant
        return tenant

    def tenant_for_address(self, address: str) -> Tenant2 | None:
        return self._by_domain.get(address.strip().lower().rpartition("@")[2])

    # -- tokens ------------------------------------------------------------------------------

    def gettoken(self, corpid: str, secret: str) -> tuple[str, int]:
        """(token, expires_in) for the app ``secret`` belongs to, per ``token_rotation``."""
        tenant = self.tenants.get(corpid.strip())
        app = tenant.app_of_secret(secret) if tenant is not None and secret else None
        if tenant is None or app is None:
            raise Api2Error(40001, "invalid credential")
        key = (tenant.corpid, app)
        now = self.clock()
        self.token_fetches[key] += 1
        current = self._tokens.get(self._current.get(key, ""))
        reuse = self.token_rotation == "reuse_until_expiry"  # noqa: S105 - a mode
        if reuse and current and now < current.expires:
            return self._current[key], max(int(current.expires - now), 1)
        if not reuse and key in self._current:  # invalidate_previous
            self._tokens.pop(self._current[key], None)
        generation = (current.generation if current else 0) + 1
        token = secrets.token_urlsafe(64)
        self._tokens[token] = Token2(tenant.corpid, app, now + self.token_ttl, generation)
        self._current[key] = token
        if len(self._tokens) > _KEPT_TOKENS:
            self._tokens = {t: v for t, v in self._tokens.items() if v.expires > now}
        return token, self.token_ttl

    def generation_of(self, token: str) -> int:
        """The generation of a token just issued (0: unknown, never a token's)."""
        found = self._tokens.get(token)
        return 0 if found is None else found.generation

    def authenticate(self, token: str | None, app: str) -> Tenant2:
        """The tenant a valid token of ``app`` belongs to, or why not."""
        if not token:
            raise Api2Error(41001, "access_token missing")
        found = self._tokens.get(token)
        if found is None:
            raise self.invalid_token()
        if self.clock() >= found.expires:
            raise Api2Error(42001, "access_token expired")
        if found.app != app:
            raise Api2Error(48002, "api forbidden")
        return self.tenants[found.corpid]

    def invalid_token(self) -> Api2Error:
        if self.invalid_token_errcode == 40001:
            return Api2Error(40001, "invalid credential")
        return Api2Error(40014, "invalid access_token")

    def revoke(self, token: str | None) -> None:
        """Make ``token`` unknown (an injected ``invalid_token`` fault)."""
        if token:
            self._tokens.pop(token, None)

    def expire_tokens(self, corpid: str | None = None, app: str | None = None) -> int:
        """End the tokens of ``corpid`` (default: every tenant) and ``app`` (default: all)
        now: their next use answers 42001. How many were ended."""
        now = self.clock()
        ended = 0
        for token in self._tokens.values():
            if (
                (corpid in (None, token.corpid))
                and (app in (None, token.app))
                and token.expires > now
            ):
                token.expires = now
                ended += 1
        return ended

    # -- SSO and mail ------------------------------------------------------------------------

    def login_key(self, tenant: Tenant2, params: Params) -> tuple[str, str]:
        """``service/get_login_url``: (userid, a one-time authkey) for the login page."""
        member = tenant.member(text(params, "userid"))
        now = self.clock()
        if len(self._authkeys) > 10000:
            self._authkeys = {k: v for k, v in self._authkeys.items() if v.expires > now}
        key = secrets.token_hex(32)
        self._authkeys[key] = _AuthKey(tenant.corpid, member.userid, now + self.login_ttl)
        return member.userid, key

    def sso_login(self, userid: str, authkey: str) -> str:
        """The member a one-time authkey logs in (and a ``log/login`` entry), or why not."""
        record = self._authkeys.get(authkey.strip())
        if record is None:
            raise Login2Refused("unknown authkey")
        if record.used:
            raise Login2Refused("authkey already used")
        if self.clock() >= record.expires:
            raise Login2Refused("authkey expired")
        if userid.strip().lower() != record.userid:
            raise Login2Refused("userid is not the member the authkey was issued for")
        record.used = True
        tenant = self.tenants.get(record.corpid)
        if tenant is not None:
            entry = {"userid": record.userid, "time": int(self.clock()), "ip": "127.0.0.1"}
            tenant.logins.append({**entry, "type": 1})
        return record.userid

    def newcount(self, tenant: Tenant2, params: Params) -> Params:
        """Unread mail of a member; with dates, only mail received in [begin, end]."""
        member = tenant.member(text(params, "userid"))
        if params.get("begin_date") is None and params.get("end_date") is None:
            return {"count": member.unread}
        first, last = self._dates(params, limit=False)
        days = [m for m in member.mails if not m.read and first <= _day(m.time) <= last]
        return {"count": len(days)}

    def _member_for(self, address: str) -> tuple[Tenant2, Member2]:
        tenant = self.tenant_for_address(address)
        if tenant is None:
            raise Api2Error(60111, "userid not found")
        return tenant, tenant.member(address)

    def deliver_mail(
        self, to: str, *, sender: str | None = None, title: str = "", at: int | None = None
    ) -> tuple[Tenant2, dict[str, Any]]:
        """A mail into ``to``'s inbox; the new-mail message's fields, after the hooks."""
        tenant, member = self._member_for(to)
        when = int(self.clock()) if at is None else at
        domain = tenant.domains[0]
        sender = sender or f'"postmaster@{domain}"<postmaster@{domain}>'
        mail = Mail2(_mail_id(), sender, title, when)
        member.mails.append(mail)
        entry = {"mailtype": 2, "subject": title, "sender": sender, "receiver": member.userid}
        tenant.mail_log.append({**entry, "time": when, "status": 13})
        fields = {
            "CorpID": tenant.corpid,
            "MailID": mail.mail_id,
            "ToUserID": member.userid,
            "FromUser": sender,
            "Title": title,
            "Time": when,
            "NewCount": member.unread,
        }
        for hook in (*tenant.on_mail, *self.on_mail):
            hook(dict(fields))
        return tenant, fields

    def mark_read(self, user: str, count: int) -> tuple[Tenant2, dict[str, Any]]:
        """Mark ``count`` of the oldest unread mails read; the UnRead message's fields."""
        if count < 0:
            raise Api2Error(40035, "invalid parameter: count must not be negative")
        tenant, member = self._member_for(user)
        for mail in [m for m in member.mails if not m.read][:count]:
            mail.read = True
        fields = {
            "CorpID": tenant.corpid,
            "UserID": member.userid,
            "Time": int(self.clock()),
            "UnReadCount": member.unread,
        }
        for hook in (*tenant.on_unread, *self.on_unread):
            hook(dict(fields))
        return tenant, fields

    # -- logs and feature settings -----------------------------------------------------------

    def _dates(self, params: Params, *, limit: bool = True) -> tuple[dt.date, dt.date]:
        try:
            first = dt.date.fromisoformat(text(params, "begin_date").strip())
            last = dt.date.fromisoformat(text(params, "end_date").strip())
        except ValueError:
            raise Api2Error(40035, "invalid parameter: dates are YYYY-MM-DD") from None
        if first > last:
            raise Api2Error(40035, "invalid parameter: begin_date is after end_date")
        if limit and (last - first).days > self.max_log_days:
            raise Api2Error(601002, "date range exceeds the limit")
        return first, last

    def log(self, tenant: Tenant2, kind: str, params: Params) -> Params:
        """``log/<kind>``: mailstatus, mail, login, batchjob, operation."""
        first, last = self._dates(params)
        within = [
            e
            for e in {"mail": tenant.mail_log, "mailstatus": tenant.mail_log}.get(
                kind, tenant.logins if kind == "login" else tenant.operations
            )
            if first <= _day(e["time"]) <= last
        ]
        if kind == "mailstatus":
            domain = text(params, "domain").strip().lower()
            recv = sum(1 for e in within if e["receiver"].endswith("@" + domain))
            sent = sum(1 for e in within if e["sender"].rstrip(">").endswith("@" + domain))
            return {"sendsum": sent, "recvsum": recv}
        if kind == "mail":
            mailtype = integer(params, "mailtype", default=0)
            userid = str(params.get("userid") or "").strip().lower()
            subject = str(params.get("subject") or "")
            rows = [
                e
                for e in within
                if mailtype in (0, e["mailtype"])
                and (not userid or userid == e["receiver"])
                and subject in e["subject"]
            ]
            return {"list": rows}
        if kind == "login":
            member = tenant.member(text(params, "userid"))
            rows = [e for e in within if e["userid"] == member.userid]
            return {"list": [{k: e[k] for k in ("time", "ip", "type")} for e in rows]}
        if kind == "batchjob":
            return {"list": []}
        wanted = integer(params, "type", default=1)  # 0 and 1 both mean "all" (§11 q7)
        rows = [e for e in within if wanted in (0, 1) or (wanted == 8 and 19 <= e["type"] <= 34)]
        return {"list": rows}

    def useroption_get(self, tenant: Tenant2, params: Params) -> Params:
        member = tenant.member(text(params, "userid"))
        kinds = directory.ids(params, "type")
        if not kinds or any(k not in member.options for k in kinds):
            raise Api2Error(40035, "invalid parameter: type must list options 1-4")
        return {"option": [{"type": k, "value": member.options[k]} for k in kinds]}

    def useroption_update(self, tenant: Tenant2, params: Params) -> Params:
        member = tenant.member(text(params, "userid"))
        options = params.get("option")
        if not isinstance(options, list) or not options:
            raise Api2Error(40035, "invalid parameter: option is required")
        changes: dict[int, str] = {}
        for item in options:
            if not isinstance(item, dict):
                raise Api2Error(40035, "invalid parameter: option items are objects")
            kind, value = integer(item, "type"), item.get("value")
            if kind not in (1, 2, 3) or str(value) not in ("0", "1"):
                raise Api2Error(40035, "invalid parameter: types 1-3, values '0' or '1'")
            changes[kind] = str(value)
        member.options.update(changes)
        return {}

    # -- observation -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """``GET /_emulator/api2/state``: secrets and tokens masked, ids as JSON integers."""
        return {
            "token_rotation": self.token_rotation,
            "token_ttl": self.token_ttl,
            "invalid_token_errcode": self.invalid_token_errcode,
            "tenants": [
                {
                    "corpid": t.corpid,
                    "name": t.name,
                    "domains": list(t.domains),
                    "secrets": {app: _mask(s) for app, s in t.secrets.items()},
                    "token_fetches": {
                        app: self.token_fetches[(t.corpid, app)] for app in t.secrets
                    },
                    "departments": [
                        {"id": d.id, "name": d.name, "parentid": d.parentid, "path": t.path(d.id)}
                        for _, d in t.subtree(ROOT_ID)
                    ],
                    "members": [
                        {"userid": m.userid, "name": m.name, "unread": m.unread}
                        for m in t.members.values()
                    ],
                    "groups": sorted(t.groups),
                    "tags": [{"tagid": g.tagid, "tagname": g.tagname} for g in t.tags.values()],
                }
                for t in self.tenants.values()
            ],
        }


def _mail_id() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")  # 44 characters


def _day(unix: int) -> dt.date:
    return dt.datetime.fromtimestamp(unix, CHINA).date()
