"""The callback receiver: ``/callback/{tenant}`` on the ``[http]`` server, for every
tenant with ``api = "api2"``.

Where it sits: the thin HTTP shell around :mod:`relay.core.callback` (which decides)
and :class:`relay.journal.Journal` (which keeps). Exmail calls the URL an administrator
saved in the 新邮件提醒 application (``spec/EXMAIL-API-2-NOTES.md`` §9):

- ``GET`` (the "save settings" handshake): 200 ``text/plain`` whose body is exactly the
  decrypted ``echostr``;
- ``POST`` (an event): the body is read whole, at most ``[callback] max_body_bytes``
  (:func:`relay.gateway.request_body.read_body`: 413 over it, 400 when it ends early),
  checked, decrypted and parsed; ``Mail`` and ``UnRead`` events are committed to the
  journal, and **only then** the answer is 200 (empty body). An unknown ``MsgType`` is
  logged, counted (``ignored``) and answered 200 with nothing journaled, so the sender
  does not retry it forever;
- refusals: 400 (a missing parameter, a malformed body or ciphertext), 403 (a bad
  signature, another CorpID, a timestamp outside ``[callback] max_age``), 404 (no such
  api2 tenant), 413; 503 + ``Retry-After`` when the journal is full or refuses the
  commit (the sender retries). Nothing is journaled for any of them.

Every answer is counted (``exmail_relay_callbacks_total{tenant,outcome}``); refusals
are logged at most every 30 s per tenant and reason (with ``suppressed``), naming the
reason, the peer and the detail, never a token, a key, a ciphertext or a mail's content.

The journal is this replica's own: in lease mode any replica may receive a callback
and commits it locally with its derived id; a callback delivered to two replicas (a
retry that lands on another pod) is delivered twice with one id (docs/leases.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web

from relay.core.callback import Refused, events_of, open_post, verify_url
from relay.core.callback_xml import OtherMessage
from relay.core.events import Event
from relay.core.throttle import LogThrottle
from relay.core.wecom_crypto import WeComCrypto
from relay.gateway.problems import Problem
from relay.gateway.request_body import read_body
from relay.journal import Journal, JournalError
from relay.runtime.observer import Observer

__all__ = ["CALLBACK_PREFIX", "CallbackReceiver", "CallbackTenant"]

log = logging.getLogger("relay.callback")

CALLBACK_PREFIX = "/callback/"
LOG_EVERY = 30.0
_PLAIN = "text/plain"


@dataclass(frozen=True, slots=True)
class CallbackTenant:
    """One api2 tenant's callback: its name and its crypto (Token, key, CorpID)."""

    name: str
    crypto: WeComCrypto


@dataclass(slots=True)
class CallbackReceiver:
    """Answers ``/callback/{tenant}``; :meth:`routes` are added to the ``[http]`` app."""

    tenants: Mapping[str, CallbackTenant]
    journal: Journal
    route: Callable[[Event], Sequence[str]]
    observer: Observer = field(default_factory=Observer)
    max_body_bytes: int = 64 * 1024
    max_age: float = 600.0
    body_timeout: float = 10.0
    """Seconds a callback's body may take to arrive (the sender gives up after 5)."""
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    _throttles: dict[tuple[str, str], LogThrottle] = field(default_factory=dict)

    def routes(self) -> list[web.RouteDef]:
        path = CALLBACK_PREFIX + "{tenant}"
        return [web.get(path, self.get, allow_head=False), web.post(path, self.post)]

    def _tenant(self, request: web.Request) -> CallbackTenant | None:
        return self.tenants.get(request.match_info["tenant"])

    async def get(self, request: web.Request) -> web.Response:
        started = self.monotonic()
        tenant = self._tenant(request)
        if tenant is None:
            return _unknown()
        try:
            plain = verify_url(tenant.crypto, request.query, now=self.clock(), max_age=self.max_age)
        except Refused as exc:
            return self._refused(request, tenant.name, exc.status, exc.reason, exc.detail, started)
        self._done(tenant.name, "verified", started)
        log.info("callback URL verified", extra={"tenant": tenant.name, "peer": request.remote})
        return web.Response(body=plain, content_type=_PLAIN, charset="utf-8")

    async def post(self, request: web.Request) -> web.Response:
        started = self.monotonic()
        tenant = self._tenant(request)
        if tenant is None:
            return _unknown()
        try:
            body = await read_body(
                request,
                self.max_body_bytes,
                setting="[callback] max_body_bytes",
                within=self.body_timeout,
            )
        except Problem as exc:
            reason = {413: "too-large", 408: "slow-body"}.get(exc.status, "incomplete-body")
            return self._refused(request, tenant.name, exc.status, reason, exc.detail, started)
        now = self.clock()
        try:
            message = open_post(tenant.crypto, request.query, body, now=now, max_age=self.max_age)
        except Refused as exc:
            return self._refused(request, tenant.name, exc.status, exc.reason, exc.detail, started)
        if isinstance(message, OtherMessage):
            self._done(tenant.name, "ignored", started)
            if self._admit(tenant.name, "ignored") is not None:
                log.warning(
                    "callback with an unknown MsgType answered 200 and dropped",
                    extra={"tenant": tenant.name, "msg_type": message.msg_type},
                )
            return web.Response(status=200)
        events = events_of(tenant.name, message, now=datetime.fromtimestamp(now, UTC))
        if self.journal.full:
            detail = self.journal.backpressure_reason() or "the journal is full"
            return self._refused(
                request, tenant.name, 503, "journal-full", detail, started, retry=True
            )
        try:
            inserted = await self.journal.append(tenant.name, events, route=self.route)
        except JournalError as exc:
            return self._refused(
                request, tenant.name, 503, "journal-error", exc.reason, started, retry=True
            )
        if inserted:
            self.observer.tenant(tenant.name).committed(events)
        self._done(tenant.name, "accepted" if inserted else "duplicate", started)
        return web.Response(status=200)

    def _done(self, tenant: str, outcome: str, started: float) -> None:
        self.observer.callback(tenant, outcome, self.monotonic() - started)

    def _admit(self, tenant: str, reason: str) -> int | None:
        throttle = self._throttles.setdefault((tenant, reason), LogThrottle(every=LOG_EVERY))
        return throttle.admit(self.monotonic())

    def _refused(
        self,
        request: web.Request,
        tenant: str,
        status: int,
        reason: str,
        detail: str,
        started: float,
        *,
        retry: bool = False,
    ) -> web.Response:
        self._done(tenant, reason, started)
        suppressed = self._admit(tenant, reason)
        if suppressed is not None:
            log.warning(
                "callback refused",
                extra={
                    "tenant": tenant,
                    "status": status,
                    "reason": reason,
                    "detail": detail,
                    "peer": request.remote,
                    "method": request.method,
                    "suppressed": suppressed,
                },
            )
        headers = {"Retry-After": "1"} if retry else None
        return web.Response(status=status, text=f"{reason}\n", content_type=_PLAIN, headers=headers)


def _unknown() -> web.Response:
    return web.Response(status=404, text="no such callback\n", content_type=_PLAIN)
