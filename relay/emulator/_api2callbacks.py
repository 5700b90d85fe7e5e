"""The new-mail callback of second-API tenants: the sender (``_callback``) wired to them.

Where it sits: ``Api2State`` calls its ``on_mail`` / ``on_unread`` seams synchronously
inside a control request (``/_emulator/api2/mail``, ``/read``); :class:`CallbackHub`
is registered there as an emulator-wide hook. For a tenant whose callback is saved
(``Tenant2.callback``: from the seed, or from ``POST /_emulator/api2/callback``) it
queues the message and sends it from a task it owns, so the control request answers at
once and the delivery (signing, encryption, attempts) runs beside it.

Ownership: the emulator's aiohttp application owns the hub (``cleanup_ctx``): the HTTP
session is opened on start; on close every task still sending is cancelled and awaited.
A task that fails (a bug, not a refused delivery: those are recorded attempts) leaves
its exception in :attr:`CallbackHub.errors` and the log, never silently.

Order: one tenant's callbacks are sent one after the other in the order they were made
(a FIFO lock per tenant), as a mail's ``Mail`` and the later ``UnRead`` of its reading
should arrive; tenants do not wait for each other.

Saving a configuration performs the admin console's "save settings" handshake first
(``CallbackSender.verify_url``: a GET that must be answered 200 with exactly the
plaintext); a failed handshake leaves the previous configuration in place. Nothing here
ever shows the Token or the EncodingAESKey.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from ._api2model import Tenant2
from ._api2seed import Api2CallbackSeed
from ._api2state import Api2State
from ._callback import AnswerCheck, CallbackSender, CallbackTarget, Delivery, Verification

__all__ = ["CALLBACKS", "CallbackHub", "Sent"]

log = logging.getLogger("relay.emulator.callbacks")
_BODY_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Sent:
    """One finished callback: its sequence number, tenant, message fields and attempts."""

    seq: int
    corpid: str
    fields: dict[str, Any]
    delivery: Delivery

    def describe(self) -> dict[str, Any]:
        d = self.delivery
        return {
            "seq": self.seq,
            "corpid": self.corpid,
            "kind": d.kind,
            "delivered": d.delivered,
            "timestamp": d.timestamp,
            "nonce": d.nonce,
            "msg_signature": d.msg_signature,
            "fields": dict(self.fields),
            "attempts": [
                {
                    "number": a.number,
                    "status": a.status,
                    "body": _shown(a.body),
                    "error": a.error,
                    "seconds": round(a.seconds, 4),
                }
                for a in d.attempts
            ],
        }


def _shown(body: bytes) -> str:
    return body[:_BODY_SHOWN].decode("utf-8", "replace")


def _answer(value: str) -> AnswerCheck:
    return "empty_or_success" if value == "empty_or_success" else "status"


def describe_verification(corpid: str, url: str, v: Verification) -> dict[str, Any]:
    return {
        "corpid": corpid,
        "url": url,
        "ok": v.ok,
        "status": v.status,
        "body": _shown(v.body),
        "error": v.error,
        "at": time.time(),
    }


class CallbackHub:
    """Sends every saved tenant's ``Mail`` and ``UnRead`` callbacks; keeps what happened."""

    def __init__(self, state: Api2State, *, keep: int = 1000) -> None:
        self.state = state
        self.sent: deque[Sent] = deque(maxlen=keep)
        self.verifications: deque[dict[str, Any]] = deque(maxlen=keep)
        self.errors: list[str] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._seq = 0
        state.on_mail.append(self._on_mail)
        state.on_unread.append(self._on_unread)

    def __repr__(self) -> str:
        return f"<CallbackHub pending={len(self._tasks)} sent={self._seq}>"

    # -- life ----------------------------------------------------------------------------------

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """``app.cleanup_ctx``: the session while the server runs; on close, every task
        still sending is cancelled and awaited."""
        self._session = aiohttp.ClientSession()
        try:
            yield
        finally:
            await self.close()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - reports, never raises
        """Wait until no callback is being sent (or ``timeout``); the number still pending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        return len(self._tasks)

    def clear(self) -> None:
        """Forget finished deliveries, handshakes and errors (``POST /_emulator/reset``)."""
        self.sent.clear()
        self.verifications.clear()
        self.errors.clear()

    # -- configuration ---------------------------------------------------------------------------

    def _sender(self, config: Api2CallbackSeed) -> CallbackSender:
        if self._session is None:
            raise RuntimeError("the emulator's server is not running")
        return CallbackSender(
            self._session,
            timeout=config.timeout,
            attempts=config.attempts,
            retry_delay=config.retry_delay,
            answer=_answer(config.answer),
            lose_answers=config.lose_answers,
        )

    @staticmethod
    def _target(tenant: Tenant2, config: Api2CallbackSeed) -> CallbackTarget:
        return CallbackTarget(
            url=config.url,
            token=config.token,
            encoding_aes_key=config.encoding_aes_key,
            corpid=tenant.corpid,
            agentid=config.agentid,
            envelope=config.template,
        )

    async def save(
        self, tenant: Tenant2, config: Api2CallbackSeed, *, verify: bool = True
    ) -> dict[str, Any] | None:
        """Save ``config`` for ``tenant`` after the GET handshake (unless ``verify`` is
        false); the handshake's record, whose ``ok`` says whether it was saved."""
        record = None
        if verify:
            sender = self._sender(config)
            checked = await sender.verify_url(self._target(tenant, config))
            record = describe_verification(tenant.corpid, config.url, checked)
            self.verifications.append(record)
            if not checked.ok:
                return record
        tenant.callback = config
        return record

    # -- the seams ---------------------------------------------------------------------------------

    def _on_mail(self, fields: dict[str, Any]) -> None:
        self._queue("Mail", fields)

    def _on_unread(self, fields: dict[str, Any]) -> None:
        self._queue("UnRead", fields)

    def _queue(self, kind: str, fields: dict[str, Any]) -> None:
        corpid = str(fields["CorpID"])
        tenant = self.state.tenants.get(corpid)
        config = tenant.callback if tenant is not None else None
        if tenant is None or config is None:
            return
        if self._session is None:
            self.errors.append(f"{kind} for {corpid}: the emulator's server is not running")
            return
        task = asyncio.get_running_loop().create_task(
            self._send(tenant, config, kind, fields), name=f"emulator-callback-{corpid}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _send(
        self, tenant: Tenant2, config: Api2CallbackSeed, kind: str, fields: dict[str, Any]
    ) -> None:
        lock = self._locks.setdefault(tenant.corpid, asyncio.Lock())
        async with lock:
            sender, target = self._sender(config), self._target(tenant, config)
            if kind == "Mail":
                delivery = await sender.send_mail(
                    target,
                    mail_id=str(fields["MailID"]),
                    to_user=str(fields["ToUserID"]),
                    from_user=str(fields["FromUser"]),
                    title=str(fields["Title"]),
                    time=int(fields["Time"]),
                    new_count=int(fields["NewCount"]),
                )
            else:
                delivery = await sender.send_unread(
                    target,
                    user=str(fields["UserID"]),
                    unread=int(fields["UnReadCount"]),
                    time=int(fields["Time"]),
                )
            self._seq += 1
            self.sent.append(Sent(self._seq, tenant.corpid, dict(fields), delivery))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.errors.append(f"{task.get_name()}: {type(exc).__name__}: {exc}")
            log.error("emulator callback task failed", exc_info=exc)

    # -- observation -----------------------------------------------------------------------------

    def snapshot(self, corpid: str | None = None, since: int = 0) -> dict[str, Any]:
        """``GET /_emulator/api2/callbacks``: targets (no Token, no key), handshakes,
        finished deliveries with every attempt, tasks pending, task errors."""
        tenants = [t for t in self.state.tenants.values() if corpid in (None, t.corpid)]
        return {
            "pending": self.pending,
            "errors": list(self.errors),
            "targets": [
                {"corpid": t.corpid, **t.callback.describe()}
                for t in tenants
                if t.callback is not None
            ],
            "verifications": [v for v in self.verifications if corpid in (None, v["corpid"])],
            "deliveries": [
                s.describe() for s in self.sent if corpid in (None, s.corpid) and s.seq > since
            ],
        }


CALLBACKS = web.AppKey("api2_callbacks", CallbackHub)
