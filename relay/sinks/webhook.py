"""The webhook sink: signed HTTP POSTs of journaled events, one sink per endpoint.

Where it sits: each ``[[webhooks]]`` entry becomes one :class:`WebhookSink` with its
own :class:`relay.runtime.drainer.Drainer`, so every endpoint has its own queue, concurrency
limit, rate limit and retry clock, and a slow or dead endpoint never holds up another
one (nor the AMQP sink). :func:`open_webhooks` builds them all for
:mod:`relay.app.wiring`.

One attempt (:meth:`WebhookSink.send`) posts the CloudEvent JSON exactly as it was
journaled, in the CloudEvents HTTP binding's structured content mode (``Content-Type:
application/cloudevents+json; charset=utf-8``), signed the Standard Webhooks way
(:mod:`relay.core.signing`): ``webhook-id`` is the event id (the receiver's dedup key,
the same on every retry), ``webhook-timestamp`` is this attempt's time.
With tracing on, the attempt's W3C ``traceparent`` (and ``tracestate``) go along as
headers (unsigned, as every header; the CloudEvent in the body, signed, carries the
event's own). The answer becomes an :data:`~relay.sinks.Outcome`:

- 2xx: delivered;
- 410 Gone: :class:`~relay.sinks.Disable` -- the drainer disables the endpoint until
  ``exmail-relay endpoint enable NAME``;
- 429 and 503: retry, honouring ``Retry-After`` (the drainer caps it by the schedule);
- redirects are *not* followed (a receiver cannot bounce us to another host), and
  they, every other status, timeouts and connection errors are retried on the schedule.

Security: the URL appears in logs and on the status page without credentials or query
string (:func:`redact_url`); secrets and signatures never appear in logs, errors or
metrics. TLS is verified, against ``ca_bundle`` when one is configured.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import aiohttp
from pydantic import SecretStr

from relay import __version__
from relay.core.backoff import parse_retry_after
from relay.core.delivery import Delivered, Delivery, Disable, Outcome, Retry
from relay.core.events import CONTENT_TYPE as CLOUDEVENT_JSON
from relay.core.redact import redact_url
from relay.core.signing import SigningKey, decode_secret, sign_headers

__all__ = [
    "CONTENT_TYPE",
    "OUTCOME_CLASSES",
    "USER_AGENT",
    "AttemptObserver",
    "WebhookSink",
    "outcome_class",
    "sink_name",
]

log = logging.getLogger("relay.sinks.webhook")

USER_AGENT: Final = f"exmail-relay/{__version__}"
# CloudEvents HTTP binding, structured content mode: this media type is what tells a
# receiver (and every CloudEvents SDK) that the body is the whole event. A plain
# application/json without ce-* headers is no CloudEvent to them.
CONTENT_TYPE: Final = f"{CLOUDEVENT_JSON}; charset=utf-8"
RESPONSE_LIMIT: Final = 4096
ERROR_BODY_LIMIT: Final = 512
_RETRY_AFTER_STATUSES: Final = frozenset({429, 503})

# The outcome classes of one attempt, as :func:`outcome_class` and the transport
# failures name them (the ``outcome`` label of the attempt metrics).
OUTCOME_CLASSES: Final = ("2xx", "3xx", "4xx", "5xx", "timeout", "connection")

# Told of every attempt: its outcome class and how long it took (seconds).
AttemptObserver = Callable[[str, float], None]


def _ignore(outcome: str, seconds: float) -> None:
    """The default :data:`AttemptObserver`: nothing is counted."""


def sink_name(endpoint: str) -> str:
    """The sink (and metrics label) name of the endpoint called ``endpoint``."""
    return f"webhook:{endpoint}"


def outcome_class(status: int) -> str:
    """The ``outcome`` label for an HTTP status: ``2xx`` .. ``5xx``."""
    return f"{min(max(status // 100, 2), 5)}xx"


def _ssl_context(ca_bundle: Path | None) -> ssl.SSLContext | bool:
    if ca_bundle is None:
        return True  # aiohttp's default: verify against the system trust store
    return ssl.create_default_context(cafile=str(ca_bundle))


class WebhookSink:
    """Posts to one endpoint. Use as an async context manager; it owns its session."""

    def __init__(
        self,
        *,
        name: str,
        url: str,
        secrets: Sequence[SecretStr],
        timeout: float = 15.0,
        max_in_flight: int = 4,
        ca_bundle: Path | None = None,
        response_limit: int = RESPONSE_LIMIT,
        clock: Callable[[], float] = time.time,
        on_attempt: AttemptObserver = _ignore,
    ) -> None:
        if not secrets:
            raise ValueError(f"{name}: at least one secret is required")
        self._name = name
        self._url = url
        self._keys: tuple[SigningKey, ...] = tuple(
            decode_secret(secret.get_secret_value()) for secret in secrets
        )
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._ca_bundle = ca_bundle
        self._response_limit = response_limit
        self._clock = clock
        self._on_attempt = on_attempt
        self._session: aiohttp.ClientSession | None = None
        self.target = redact_url(url)

    def __repr__(self) -> str:
        return f"WebhookSink({self._name!r}, {self.target!r})"

    @property
    def name(self) -> str:
        return self._name

    @property
    def connected(self) -> bool:
        """Ready to post (HTTP has no standing connection to lose)."""
        return self._session is not None and not self._session.closed

    async def __aenter__(self) -> WebhookSink:
        connector = aiohttp.TCPConnector(
            limit=self._max_in_flight, ssl=_ssl_context(self._ca_bundle)
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            headers={"User-Agent": USER_AGENT},
        )
        log.info("webhook endpoint ready", extra={"sink": self._name, "target": self.target})
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, delivery: Delivery) -> Outcome:
        session = self._session
        if session is None or session.closed:
            raise RuntimeError(f"{self._name}: send() outside 'async with'")
        headers = sign_headers(self._keys, delivery.event_id, int(self._clock()), delivery.body)
        headers["Content-Type"] = CONTENT_TYPE
        if delivery.traceparent is not None:  # tracing on: the W3C trace context
            headers["traceparent"] = delivery.traceparent
            if delivery.tracestate:
                headers["tracestate"] = delivery.tracestate
        started = time.monotonic()
        try:
            async with session.post(
                self._url, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                body = await self._read_capped(response)
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            return self._failed("timeout", f"no answer within {self._timeout:g} s", started)
        except aiohttp.ClientError as exc:
            return self._failed("connection", f"connection failed: {_describe(exc)}", started)
        self._on_attempt(outcome_class(status), time.monotonic() - started)
        if 200 <= status < 300:
            return Delivered()
        error = f"HTTP {status}"
        if 300 <= status < 400:
            error += " (redirects are not followed)"
        text = self._scrub(body, headers["webhook-signature"])
        if text:
            error += f": {text}"
        if status == 410:
            return Disable(error)
        if status in _RETRY_AFTER_STATUSES:
            return Retry(error, retry_after=parse_retry_after(retry_after))
        return Retry(error)

    def _failed(self, outcome: str, error: str, started: float) -> Retry:
        self._on_attempt(outcome, time.monotonic() - started)
        return Retry(error)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """At most ``response_limit`` bytes of the body: a receiver cannot flood us."""
        chunks: list[bytes] = []
        size = 0
        while size < self._response_limit:
            chunk = await response.content.read(self._response_limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    @staticmethod
    def _scrub(body: bytes, signatures: str) -> str:
        """The response body as error text: one line, truncated, our signatures removed."""
        text = body[:ERROR_BODY_LIMIT].decode("utf-8", errors="replace")
        for signature in signatures.split(" "):
            text = text.replace(signature.removeprefix("v1,"), "***")
        text = " ".join(text.split())
        if len(body) > ERROR_BODY_LIMIT:
            text += " ..."
        return text


def _describe(exc: aiohttp.ClientError) -> str:
    # Never str(exc) in general: some aiohttp errors carry the full URL (query included).
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}: {exc.os_error.strerror or type(exc.os_error).__name__}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return type(exc).__name__
