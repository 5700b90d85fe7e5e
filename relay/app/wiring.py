"""Wiring: the one place where :class:`relay.app.settings.Settings` become components.

Configuration is read only at the edge: this module turns the settings into explicit
keyword arguments for the journal, the sinks, the clients and the listeners, opens them
in order on one exit stack, and hands back a ready :class:`relay.runtime.supervisor.RelayService`
plus the HTTP server. Closing the stack closes everything in reverse order.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp

from relay.app.settings import Settings, TenantSettings
from relay.core.backoff import Backoff
from relay.core.routing import Route, Router
from relay.exmail import ExmailClient
from relay.journal import Journal
from relay.ops import metrics
from relay.ops.http import OpsServer, build_app
from relay.runtime.drainer import Drainer, DrainPolicy
from relay.runtime.listener import Listener
from relay.runtime.supervisor import RelayService
from relay.sinks.amqp import AmqpSink
from relay.sinks.console import ConsoleSink

__all__ = ["Running", "build_service", "client_for"]


@dataclass(frozen=True, slots=True)
class Running:
    service: RelayService
    server: OpsServer | None


def _observe_request(endpoint: str, seconds: float, outcome: str) -> None:
    if endpoint != "listen":
        metrics.UPSTREAM_DURATION.labels(endpoint, outcome).observe(seconds)


@contextlib.asynccontextmanager
async def build_service(
    settings: Settings,
    *,
    console_stream: TextIO | None = None,
    hostname: str | None = None,
) -> AsyncIterator[Running]:
    """Open every component the settings ask for; close them all on exit."""
    async with contextlib.AsyncExitStack() as stack:
        js = settings.journal
        journal = await stack.enter_async_context(
            Journal(
                js.path,
                max_events=js.max_events,
                max_bytes=js.max_bytes,
                retention=js.retention,
                dead_retention=js.dead_retention,
                synchronous=js.synchronous,
            )
        )
        routes: list[Route] = []
        drainers: list[Drainer] = []
        describers: dict[str, dict[str, Any]] = {}

        if settings.amqp.enabled:
            a = settings.amqp
            amqp = await stack.enter_async_context(
                AmqpSink(
                    url=a.url,
                    exchange=a.exchange,
                    exchange_passive=a.exchange_passive,
                    declare_queue=a.declare_queue,
                    queue=a.queue,
                    queue_type=a.queue_type,
                    binding_key=a.binding_key,
                )
            )
            routes.append(Route(amqp.name))
            drainers.append(
                Drainer(
                    journal,
                    amqp,
                    DrainPolicy(
                        max_in_flight=a.max_in_flight, backoff=Backoff(base=0.2, cap=a.retry_max)
                    ),
                )
            )
            describers[amqp.name] = {"target": amqp.target}
        if settings.console.enabled:
            console = ConsoleSink(stream=console_stream)
            routes.append(Route(console.name))
            # send() never awaits, so attempts finish in the order they start: a wide
            # window keeps the order and lets finished deliveries share journal writes.
            drainers.append(Drainer(journal, console, DrainPolicy(max_in_flight=256)))
        if settings.webhooks:
            webhook_module = importlib.import_module("relay.sinks.webhook")
            hooks = await stack.enter_async_context(webhook_module.open_webhooks(settings.webhooks))
            for sink, route, policy, description in hooks:
                routes.append(route)
                drainers.append(Drainer(journal, sink, policy))
                describers[sink.name] = description

        router = Router(tuple(routes))
        tenants = settings.shard_tenants(hostname)
        # One shared HTTP session: no connection limit, since every tenant holds a poll.
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        )
        listeners = []
        for tenant in tenants:
            client = client_for(
                tenant,
                session=session,
                on_request=_observe_request,
                on_token=_token_observer(tenant.name),
            )
            await stack.enter_async_context(client)
            listeners.append(
                Listener(
                    tenant=tenant.name,
                    client=client,
                    journal=journal,
                    route=router,
                    bootstrap=tenant.directory_bootstrap,
                    enrich_concurrency=tenant.enrich_concurrency,
                )
            )

        service = RelayService(
            journal=journal,
            listeners=listeners,
            drainers=drainers,
            shutdown_timeout=settings.shutdown.timeout,
            prune_interval=settings.journal.prune_interval,
            describe_sinks=lambda: describers,
        )
        server = None
        if settings.http.enabled:
            h = settings.http
            basic = (
                (h.basic_user, h.basic_password)
                if h.basic_user is not None and h.basic_password is not None
                else None
            )
            app = build_app(
                service,
                auth_token=h.auth_token,
                basic_auth=basic,
                protect_probes=h.protect_probes,
                show_content=settings.status.show_content,
                recent=settings.status.recent_events,
            )
            server = await stack.enter_async_context(OpsServer(app, host=h.host, port=h.port))
        yield Running(service, server)


def client_for(tenant: TenantSettings, **options: Any) -> ExmailClient:
    """The API client for one configured tenant; ``options`` add or override keywords."""
    kwargs: dict[str, Any] = {
        "client_id": tenant.client_id,
        "client_secret": tenant.secret(),
        "api_url": tenant.api_url,
        "token_url": tenant.token_url,
        "login_url": tenant.login_url,
        "auth_method": tenant.auth_method,
        "action_codes": tenant.action_codes,
        "timeout": tenant.request_timeout,
        "listen_timeout": tenant.listen_timeout,
    }
    kwargs.update(options)
    return ExmailClient(**kwargs)


def _token_observer(tenant: str) -> Callable[[str], None]:
    def observe(reason: str) -> None:
        metrics.TOKEN_FETCHES.labels(tenant, reason).inc()

    return observe
