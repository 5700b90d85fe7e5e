"""The emulator's in-memory world: companies, tokens, directory, mailboxes, push queues.

Why it is shaped like this: everything the protocol *decides* (who may call, what a
request changes, which error it earns, what ``listen`` and ``user/list`` answer) lives
here as plain synchronous methods on ``EmulatorState``, with no HTTP and no asyncio. The
aiohttp layer parses parameters into Python values, calls one method, and renders the
answer or the ``ApiError``. That keeps the rules testable without sockets, and lets the
control API reuse exactly the rules the OpenApi enforces.

The one link outward is ``on_change(company, directory)``: a hook the server sets so
that held ``listen`` requests wake when a push is queued or the directory version moves
(and its sibling ``on_token_revoked(company)``, so that listens held under a token that
was just superseded or revoked answer 1200 at once instead of holding on).
Time comes from an injectable ``clock`` so tests can move it.

Directory versions: each company has a ``ver`` (milliseconds since the epoch, strictly
increasing: ``max(now_ms, ver + 1)``), bumped by every account or department change, and
a change log of ``(ver, alias, action)`` that ``user/list`` folds into one entry per
account (its latest action).
"""

from __future__ import annotations

import bisect
import collections
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from . import _directory
from ._errors import (
    ApiError,
    EmulatorError,
    already_exists,
    invalid_client,
    invalid_parameter,
    invalid_token,
    user_not_found,
)
from ._model import Account, Action, Company, Group, Push
from ._seed import CompanySeed, Seed, demo_seed, normalize_email

_ISSUED_KEPT = 100_000

__all__ = ["ACTION_CODES", "ActionCodes", "EmulatorState", "LoginRefused", "api_error_status"]

ActionCodes = Literal["authority", "v1.4"]
ACTION_CODES: dict[str, dict[Action, int]] = {
    "authority": {"add": 1, "mod": 2, "del": 3},  # bizmail-openapi.txt, user/list
    "v1.4": {"del": 1, "add": 2, "mod": 3},  # bizmail-openapi-v1.4.txt, same as user/sync
}


class LoginRefused(EmulatorError):
    """An SSO login ticket was refused; the message says why (shown on the 403 page)."""


@dataclass(slots=True)
class _Ticket:
    admin: str
    alias: str
    expires: float
    used: bool = False


def _mask(secret: str | None) -> str | None:
    return None if secret is None else secret[:4] + "…"


class EmulatorState:
    """Every company the emulator serves, and every rule of the protocol. No I/O."""

    def __init__(
        self,
        seed: Seed | None = None,
        *,
        token_ttl: int = 7200,
        action_codes: ActionCodes = "authority",
        authkey_ttl: float = 300.0,
        max_pending: int = 10000,
        redeliver: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if action_codes not in ACTION_CODES:
            raise ValueError(f"action_codes must be one of {sorted(ACTION_CODES)}")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.seed = demo_seed() if seed is None else seed
        self.token_ttl = token_ttl
        self.action_codes: ActionCodes = action_codes
        self.authkey_ttl = authkey_ttl
        self.max_pending = max_pending
        self.redeliver = redeliver
        self.clock = clock
        self.on_change: Callable[[Company, bool], None] = lambda company, directory: None
        self.on_token_revoked: Callable[[Company], None] = lambda company: None
        self.companies: dict[str, Company] = {}
        self._by_domain: dict[str, Company] = {}
        self._by_token: dict[str, Company] = {}
        # Every token issued -> its admin, revoked ones too (bounded): the request log
        # attributes a call made with a superseded token to its company.
        self._issued: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._tickets: dict[str, _Ticket] = {}
        self._mail_seq = 0
        self.reset()

    def __repr__(self) -> str:
        return f"<EmulatorState companies={len(self.companies)} action_codes={self.action_codes}>"

    # -- companies ---------------------------------------------------------------------------

    def reset(self, *, empty: bool = False) -> None:
        """Back to the seed (or to nothing): directory, mailboxes, queues, tokens, tickets."""
        self.companies.clear()
        self._by_domain.clear()
        self._by_token.clear()
        self._issued.clear()
        self._tickets.clear()
        if not empty:
            for company in self.seed.companies:
                self.add_company(company)

    def add_company(self, seed: CompanySeed) -> Company:
        if seed.admin in self.companies:
            raise already_exists(f"company with admin {seed.admin!r}")
        for domain in seed.domains:
            if domain in self._by_domain:
                raise already_exists(f"domain {domain!r} belongs to another company")
        company = Company(
            admin=seed.admin,
            key=seed.key,
            domains=seed.domains,
            name=seed.name,
            ver=self._now_ms(),
            pending=deque(maxlen=self.max_pending),
            parties=set(seed.parties),
        )
        for u in seed.users:
            company.accounts[u.alias] = Account(
                alias=u.alias,
                name=u.name,
                gender=u.gender,
                position=u.position,
                tel=u.tel,
                mobile=u.mobile,
                extid=u.extid,
                parties=list(u.parties),
                slaves=list(u.slaves),
                open_type=u.open_type,
                unread=u.unread,
            )
            for slave in u.slaves:
                company.slaves[slave] = u.alias
        for g in seed.groups:
            members = [m for m in g.members if m in company.accounts]
            company.groups[g.alias] = Group(g.alias, g.name, g.status, members, list(g.allow_list))
        self.companies[company.admin] = company
        for domain in company.domains:
            self._by_domain[domain] = company
        return company

    def company_for_address(self, address: str) -> Company | None:
        return self._by_domain.get(normalize_email(address).rpartition("@")[2])

    # -- tokens ------------------------------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> str:
        """A new token for the admin; the previous one stops working (one valid per admin)."""
        company = self.companies.get(normalize_email(client_id))
        if company is None or not secrets.compare_digest(
            company.key.encode("utf-8"), client_secret.encode("utf-8")
        ):
            raise invalid_client()
        self.invalidate_token(company)
        token = secrets.token_urlsafe(48)
        company.token = token
        company.token_generation += 1
        company.token_expires = self.clock() + self.token_ttl
        self._by_token[token] = company
        self._issued[token] = company.admin
        if len(self._issued) > _ISSUED_KEPT:
            self._issued.popitem(last=False)
        return token

    def token_owner(self, token: str | None) -> str | None:
        """The admin a token was issued to, valid or not (``None``: never issued here)."""
        return self._issued.get(token) if token else None

    def authenticate(self, token: str | None) -> Company:
        company = self._by_token.get(token) if token else None
        if company is None or company.token != token:
            raise invalid_token()
        if self.clock() >= company.token_expires:
            self.invalidate_token(company)
            raise invalid_token()
        return company

    def invalidate_token(self, company: Company) -> None:
        if company.token is not None:
            self._by_token.pop(company.token, None)
            company.token = None
            self.on_token_revoked(company)  # held listens under it must hear 1200 now

    # -- versions and change log -------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def bump(self, company: Company, changed: Iterable[tuple[str, Action]] = ()) -> int:
        """Move the company's Ver forward, log the account changes, wake listeners."""
        company.ver = max(self._now_ms(), company.ver + 1)
        company.changes.extend((company.ver, alias, action) for alias, action in changed)
        self.on_change(company, True)
        return company.ver

    def user_list(self, company: Company, ver: int) -> dict[str, Any]:
        codes = ACTION_CODES[self.action_codes]
        if ver <= 0:
            entries = [{"Action": codes["add"], "Alias": a} for a in company.accounts]
        else:
            latest: dict[str, Action] = {}
            start = bisect.bisect_right(company.changes, ver, key=lambda c: c[0])
            for _, alias, action in company.changes[start:]:
                latest[alias] = action
            entries = [{"Action": codes[a], "Alias": alias} for alias, a in latest.items()]
        return {"Ver": company.ver, "Count": len(entries), "List": entries}

    # -- directory (rules in _directory) -----------------------------------------------------

    def user_sync(self, company: Company, action: Action, alias: str, **fields: Any) -> None:
        changed = _directory.user_sync(company, action, alias, **fields)
        self.bump(company, changed)

    def party_sync(self, company: Company, action: Action, src: str, dst: str) -> None:
        changed = _directory.party_sync(company, action, src, dst)
        self.bump(company, changed)

    # -- mail and pushes ---------------------------------------------------------------------

    def _push(self, company: Company, item: Push) -> None:
        if len(company.pending) == company.pending.maxlen:
            company.dropped += 1  # the deque drops the oldest on append
        company.pending.append(item)
        self.on_change(company, False)

    def deliver_mail(
        self, to: str, *, sender: str | None = None, subject: str = "", summary: str = ""
    ) -> str:
        company = self.company_for_address(to)
        account = company.resolve(to) if company else None
        if company is None or account is None:
            raise user_not_found(to)
        self._mail_seq += 1
        mail_id = f"ZC{self._mail_seq:04d}-{secrets.token_urlsafe(12)}"
        account.unread += 1
        self._push(
            company,
            {
                "UserName": account.alias,
                "MailId": mail_id,
                "Sender": sender or f'"Emulator" <postmaster@{company.domains[0]}>',
                "Receiver": normalize_email(to),
                "Subject": subject,
                "Summary": summary,
                "NewCount": account.unread,
            },
        )
        return mail_id

    def mark_read(self, user: str, count: int) -> int:
        if count < 0:
            raise invalid_parameter("count must not be negative")
        company = self.company_for_address(user)
        account = company.resolve(user) if company else None
        if company is None or account is None:
            raise user_not_found(user)
        account.unread = max(0, account.unread - count)
        self._push(company, {"UserName": account.alias, "NewCount": account.unread})
        return account.unread

    def take_listen(self, company: Company, client_ver: int, max_batch: int) -> list[Push]:
        """What a ``listen`` with ``client_ver`` gets now: a version update first when
        behind, then up to ``max_batch`` pending pushes (removed from the queue)."""
        items: list[Push] = []
        if client_ver < company.ver:
            items.append({"Ver": str(company.ver)})
        pending = company.pending
        for _ in range(min(max_batch, len(pending))):
            items.append(pending.popleft())
        return items

    def listen_opened(self, company: Company, token: str | None) -> None:
        """Redelivery mode: a listen under the same token acknowledges what the previous
        answer handed out; a listen under another token (a new client session, e.g. a
        restarted relay) gets those pushes again, in front of the queue."""
        if not self.redeliver or not company.unacked:
            return
        if token != company.unacked_token:
            self.requeue(company, company.unacked)
        company.unacked = []

    def handed_out(self, company: Company, items: list[Push], token: str | None) -> None:
        """Redelivery mode: remember what this answer carries until it is acknowledged."""
        if self.redeliver:
            company.unacked = [i for i in items if "Ver" not in i]
            company.unacked_token = token

    def requeue(self, company: Company, items: list[Push]) -> None:
        """Put pushes a vanished listener took back at the front, in order."""
        for item in reversed([i for i in items if "Ver" not in i]):
            if len(company.pending) == company.pending.maxlen:
                company.dropped += 1
                continue
            company.pending.appendleft(item)

    # -- SSO ---------------------------------------------------------------------------------

    def issue_authkey(self, company: Company, alias: str) -> str:
        account = company.account(alias)
        now = self.clock()
        if len(self._tickets) > 10000:
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
        ticket = secrets.token_hex(40).upper()
        self._tickets[ticket] = _Ticket(company.admin, account.alias, now + self.authkey_ttl)
        return ticket

    def sso_login(self, agent: str, user: str, ticket: str) -> str:
        """The account a valid one-time ticket logs into; ``LoginRefused`` says why not."""
        record = self._tickets.get(ticket.strip())
        if record is None:
            raise LoginRefused("unknown ticket")
        if record.used:
            raise LoginRefused("ticket already used")
        if self.clock() >= record.expires:
            raise LoginRefused("ticket expired")
        if normalize_email(agent) != record.admin:
            raise LoginRefused("agent is not the administrator that requested the ticket")
        if normalize_email(user) != record.alias:
            raise LoginRefused("user is not the account the ticket was issued for")
        record.used = True
        return record.alias

    # -- observation -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The state for ``GET /_emulator/state``; keys and tokens masked."""
        return {
            "action_codes": self.action_codes,
            "companies": [
                {
                    "admin": c.admin,
                    "name": c.name,
                    "key": _mask(c.key),
                    "token": _mask(c.token),
                    "domains": list(c.domains),
                    "ver": c.ver,
                    "pending": len(c.pending),
                    "dropped": c.dropped,
                    "parties": sorted(c.parties),
                    "accounts": [
                        {"alias": a.alias, "name": a.name, "unread": a.unread}
                        for a in c.accounts.values()
                    ],
                    "groups": [
                        {"alias": g.alias, "status": g.status, "members": len(g.members)}
                        for g in c.groups.values()
                    ],
                }
                for c in self.companies.values()
            ],
        }


def api_error_status(error: ApiError) -> int:
    """How the control API maps a state refusal to HTTP: not found 404, else 400."""
    return 404 if error.errcode in {"1310", "1400", "1401"} else 400
