"""Wiring: the composition root, where :class:`relay.app.settings.Settings` become components.

Configuration is read only at the edge: the settings become explicit keyword arguments
for the journal, the sinks (drain policies, routes), the Exmail clients, the listeners
and the callback receiver (relay.app.callbacks), opened in order on one exit stack that
yields a :class:`relay.runtime.supervisor.RelayService` and the HTTP server and closes
everything in reverse order. Sink modules are adapters that know nothing of settings.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp

from relay.app.api2_clients import gateway_tenants2, open_clients2
from relay.app.callbacks import callback_board, callback_receiver
from relay.app.directory2 import directory_pollers, listing_store
from relay.app.leasing import checkpoint_store, lease_manager, report_blocks, token_fence
from relay.app.ops_tokens import token_source
from relay.app.peers import admin_api, forwarder, owner_lookup, serves
from relay.app.settings import (
    AmqpSettings,
    ClientSettings,
    Settings,
    TenantSettings,
    WebhookSettings,
)
from relay.app.tracing import open_tracing
from relay.core.backoff import Backoff
from relay.core.delivery import DrainPolicy
from relay.core.routing import Route, Router
from relay.core.shards import ReleaseReason
from relay.exmail import ExmailClient, fence_trace
from relay.gateway import ApiClient, ClientRegistry, Gateway, GatewayTenant, UnreadCache, UnreadFeed
from relay.gateway.limits import TenantGate
from relay.journal import Journal
from relay.ops.http import OpsServer, build_app
from relay.ops.metrics import PrometheusObserver
from relay.runtime.checkpointing import CheckpointPublisher, NoCheckpoints
from relay.runtime.checkpoints import CheckpointStore
from relay.runtime.drainer import Drainer
from relay.runtime.listener import Listener
from relay.runtime.observer import Observer, upstream_observer
from relay.runtime.ownership import ShardRunner
from relay.runtime.pacing import Pacer
from relay.runtime.status import ShardingStatus, SinkDescription
from relay.runtime.supervisor import RelayService
from relay.sinks import Sink
from relay.sinks.amqp import AmqpSink
from relay.sinks.console import ConsoleSink
from relay.sinks.webhook import WebhookSink, sink_name

__all__ = ["Running", "SinkPlan", "build_service", "client_for", "open_webhooks"]

log = logging.getLogger("relay.app.wiring")


@dataclass(frozen=True, slots=True)
class Running:
    service: RelayService
    server: OpsServer | None
    gateway: Gateway | None = None


@dataclass(frozen=True, slots=True)
class SinkPlan:
    """One opened sink with how it is drained, what it receives and what the status
    page says about it."""

    sink: Sink
    route: Route
    policy: DrainPolicy
    description: SinkDescription


def _amqp_policy(settings: AmqpSettings) -> DrainPolicy:
    return DrainPolicy(
        max_in_flight=settings.max_in_flight, backoff=Backoff(base=0.2, cap=settings.retry_max)
    )


def _webhook_policy(hook: WebhookSettings) -> DrainPolicy:
    return DrainPolicy(
        max_in_flight=hook.max_in_flight,
        schedule=tuple(hook.retry_schedule),
        jitter=hook.jitter,
        ordered=hook.ordered,
        rate_limit=hook.rate_limit,
    )


@contextlib.asynccontextmanager
async def open_webhooks(
    settings: Sequence[WebhookSettings], observer: Observer | None = None
) -> AsyncIterator[list[SinkPlan]]:
    """Open a sink per enabled webhook operation, with its route and drain policy."""
    observer = observer or Observer()
    async with contextlib.AsyncExitStack() as stack:
        plans: list[SinkPlan] = []
        for hook in settings:
            name = sink_name(hook.name)
            if not hook.enabled:
                log.info("webhook operation not enabled", extra={"sink": name})
                continue
            sink = await stack.enter_async_context(
                WebhookSink(
                    name=name,
                    url=hook.url,
                    secrets=hook.secret,
                    timeout=hook.timeout,
                    max_in_flight=hook.max_in_flight,
                    ca_bundle=hook.ca_bundle,
                    on_attempt=observer.sink(name).attempt,
                )
            )
            plans.append(
                SinkPlan(
                    sink=sink,
                    route=Route(name, types=tuple(hook.types), tenants=frozenset(hook.tenants)),
                    policy=_webhook_policy(hook),
                    description=SinkDescription(
                        target=sink.target, types=tuple(hook.types), tenants=tuple(hook.tenants)
                    ),
                )
            )
        yield plans


@contextlib.asynccontextmanager
async def _open_sinks(
    settings: Settings, observer: Observer, console_stream: TextIO | None
) -> AsyncIterator[list[SinkPlan]]:
    async with contextlib.AsyncExitStack() as stack:
        plans: list[SinkPlan] = []
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
                    heartbeat=a.heartbeat,
                    confirm_timeout=a.confirm_timeout,
                    content_mode=a.content_mode,
                    header_prefix=a.header_prefix,
                )
            )
            report_blocks(amqp.link, amqp.name, observer)
            plans.append(
                SinkPlan(
                    amqp, Route(amqp.name), _amqp_policy(a), SinkDescription(target=amqp.target)
                )
            )
        if settings.console.enabled:
            console = ConsoleSink(stream=console_stream)
            # send() never awaits, so attempts finish in the order they start: a wide
            # window keeps the order and lets finished deliveries share journal writes.
            plans.append(
                SinkPlan(
                    console, Route(console.name), DrainPolicy(max_in_flight=256), SinkDescription()
                )
            )
        plans += await stack.enter_async_context(open_webhooks(settings.webhooks, observer))
        yield plans


@contextlib.asynccontextmanager
async def build_service(
    settings: Settings,
    *,
    console_stream: TextIO | None = None,
    hostname: str | None = None,
    observer: PrometheusObserver | None = None,
    checkpoints: CheckpointStore | None = None,
) -> AsyncIterator[Running]:
    """Open every component the settings ask for; close them all on exit. Lease mode:
    ``checkpoints`` (opened by the caller; default: one built from the settings) is the
    broker's copy of the Ver each new owner starts from."""
    observer = observer or PrometheusObserver()
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
        plans = await stack.enter_async_context(_open_sinks(settings, observer, console_stream))
        tracing = await stack.enter_async_context(open_tracing())  # the OTEL_ variables
        drainers: list[Drainer] = []
        for plan in plans:
            sink_observer = observer.sink(plan.sink.name)
            if isinstance(plan.sink, WebhookSink):
                sink_observer.export_webhook_zeros()
            drainers.append(
                Drainer(journal, plan.sink, plan.policy, observer=sink_observer, tracing=tracing)
            )
        describers = {plan.sink.name: plan.description for plan in plans}
        # Before anything drains or appends: rows no drainer will ever take must not hold
        # the backlog bound (they become dead letters, listed, replayable, droppable).
        retired_at = time.time()
        retired = await journal.retire_orphans({plan.sink.name for plan in plans})
        for name, count in retired.items():
            log.warning(
                "pending deliveries of unconfigured sink retired to dead letters",
                extra={"sink": name, "count": count},
            )
        router = Router(tuple(plan.route for plan in plans))

        tenants = settings.shard_tenants(hostname)
        leases = (
            lease_manager(settings, hostname, observer)
            if settings.sharding_mode == "lease"
            else None
        )
        # One shared session, no connection limit (every tenant holds a poll); fence_trace.
        session = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), trace_configs=[fence_trace()]
            )
        )
        # The API gateway (on with [[clients]] and [http]): its own session, so its calls
        # never wait for a connection the listeners need; the listeners' token caches.
        gateway_on = bool(settings.clients) and settings.http.enabled
        if settings.clients and not settings.http.enabled:
            log.warning("[[clients]] are configured but [http] is off: the API gateway is off")
        unread = UnreadCache()
        api2_names = [t.name for t in settings.tenants if t.api == "api2"]
        listener_observer: Observer = (
            UnreadFeed(observer, unread, callback_tenants=api2_names) if gateway_on else observer
        )
        # Lease mode: every committed Ver also goes to the broker for the shard's next owner
        # (docs/leases.md); the listeners take it explicitly. Static mode: nothing.
        store = None if leases is None else checkpoints
        if leases is not None and store is None:
            store = await stack.enter_async_context(checkpoint_store(settings, leases, observer))
        publisher: CheckpointPublisher = store or NoCheckpoints()
        gateway_tenants: dict[str, GatewayTenant] = {}
        if gateway_on:
            g = settings.gateway
            gateway_session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(
                        limit=g.tenant_concurrency * max(1, len(tenants))
                    ),
                    trace_configs=[fence_trace()],
                )
            )
        # Token fetches and bootstraps wait their turn: a start or a takeover never storms
        # Exmail's token endpoint ([sharding] takeover_rate; docs/leases.md, "Pacing").
        pacer = Pacer(settings.sharding.takeover_rate, observer=observer)
        clients: dict[str, tuple[TenantSettings, ExmailClient]] = {}
        for tenant in (t for t in tenants if t.api == "openapi"):  # api2: callbacks
            tenant_observer = observer.tenant(tenant.name)
            # The emulator-only header, only where configured (never to Exmail by default).
            replica = (
                settings.sharding.resolved_replica_id(hostname) if tenant.replica_header else None
            )
            client = client_for(
                tenant,
                session=session,
                on_request=upstream_observer(observer),
                on_token=tenant_observer.token_fetched,
                token_fence=None if leases is None else token_fence(leases, tenant.name),
                token_pace=pacer.turn,
                replica=replica,
            )
            await stack.enter_async_context(client)
            if gateway_on:
                gateway_client = client_for(
                    tenant,
                    session=gateway_session,
                    on_request=upstream_observer(observer),
                    tokens=client.tokens,
                    read_retries=0,  # the caller retries, told so by 503 + Retry-After
                    replica=replica,
                )
                gate = TenantGate(g.tenant_concurrency, queue_timeout=g.queue_timeout)
                gateway_tenants[tenant.name] = GatewayTenant(tenant.name, gateway_client, gate)
            clients[tenant.name] = (tenant, client)
        # api2 tenants: one client each holds the per-application tokens; the gateway's
        # client shares them (and, in lease mode, their fence; their pacing too).
        clients2 = await open_clients2(
            stack,
            tenants,
            session=session,
            observer=observer,
            fence=None if leases is None else lambda name: token_fence(leases, name),
            pace=pacer.turn,  # the same turns as the first API's tenants
        )
        if gateway_on:
            gateway_tenants |= gateway_tenants2(tenants, clients2, gateway_session, g, observer)

        def make_listener(name: str, on_listen: Callable[[], None] | None = None) -> Listener:
            tenant, client = clients[name]
            return Listener(
                tenant=name,
                client=client,
                journal=journal,
                route=router,
                bootstrap=tenant.directory_bootstrap,
                enrich_concurrency=tenant.enrich_concurrency,
                observer=listener_observer,
                on_listen=on_listen,
                checkpoints=publisher,
                tracing=tracing,
            )

        runner = None
        listeners = []
        if leases is None:
            listeners = [make_listener(name) for name in clients]
            sharding = _static_sharding(settings, hostname)
        else:
            runner = ShardRunner(
                leases=leases,
                tenants=list(clients),
                make_listener=make_listener,
                checkpoints=store,
                checkpoint_store=store,
                stop_timeout=settings.shutdown.timeout,
                observer=observer,
            )
            leases.before_release = runner.before_release
            await stack.enter_async_context(leases)
            sharding = runner.describe

        # api2 tenants: their callbacks (whose unread counts feed the gateway's cache too)
        board = callback_board(settings, listener_observer)
        pollers = await directory_pollers(  # and their directories, listed on an interval
            stack, settings=settings, hostname=hostname, journal=journal, route=router,
            session=session, board=board, observer=observer, leases=leases,
            tokens={name: client2.tokens for name, client2 in clients2.items()},
            pacer=pacer,
            carrier=None if store is None else listing_store(settings, store, observer),
        )  # fmt: skip
        if leases is not None and pollers is not None and runner is not None:
            leases.before_release = _chain(runner.before_release, pollers.before_release)
        service = RelayService(
            journal=journal,
            listeners=listeners,
            drainers=drainers,
            shutdown_timeout=settings.shutdown.timeout,
            prune_interval=settings.journal.prune_interval,
            describe_sinks=lambda: describers,
            observer=observer,
            retired_orphans=retired,
            retired_at=retired_at,
            runner=runner,
            sharding=sharding,
            release_after=settings.sharding.release_after if leases is not None else None,
            delivery_links=[p.sink.name for p in plans if isinstance(p.sink, AmqpSink)],
            callbacks=tuple(board.tallies.values()),
            pollers=pollers,
        )
        if leases is not None:
            leases.health = service.unfit  # an unhealthy replica lets its shards go
        gateway = None
        if gateway_on:
            gateway = Gateway(
                clients=ClientRegistry([_api_client(c) for c in settings.clients]),
                tenants=gateway_tenants,
                unread=unread,
                states=lambda: {
                    li.status.tenant: li.status.state for li in service.all_listeners()
                },
                observer=observer,
                max_body_bytes=settings.gateway.max_body_bytes,
                max_link_ttl=settings.gateway.max_link_ttl,
                sso_expires_in=settings.gateway.sso_expires_in,
                min_token_age=settings.gateway.min_token_age,
                owner_of=owner_lookup(settings, hostname, leases),
                serves=serves(leases),
                forwarder=await forwarder(stack, settings, hostname, leases),
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
                auth_token=token_source(h, "auth_token"),
                basic_auth=basic,
                protect_probes=h.protect_probes,
                show_content=settings.status.show_content,
                recent=settings.status.recent_events,
                registry=observer.metrics.registry,
                gateway=gateway,
                admin=await admin_api(
                    stack, settings, hostname, leases, journal, frozenset(describers), pollers
                ),
                callback=callback_receiver(settings, journal, router, board),
            )
            server = await stack.enter_async_context(OpsServer(app, host=h.host, port=h.port))
        yield Running(service, server, gateway)


def _api_client(c: ClientSettings) -> ApiClient:
    return ApiClient(
        name=c.name,
        keys=tuple(c.key),
        tenants=frozenset(c.tenants),
        scopes=frozenset(c.scopes),
        rate=c.rate,
        burst=c.burst,
        link_secret=c.link_secret,
        single_use=c.single_use,
    )


def client_for(tenant: TenantSettings, **options: Any) -> ExmailClient:
    """The API client for one configured tenant; ``options`` add or override keywords."""
    client_id, client_secret = tenant.credentials()  # ConfigError for an api2 tenant
    kwargs: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": client_secret,
        "api_url": tenant.api_url,
        "token_url": tenant.token_url,
        "login_url": tenant.login_url,
        "auth_method": tenant.auth_method,
        "action_codes": tenant.action_codes,
        "timeout": tenant.request_timeout,
        "max_response_bytes": tenant.max_response_bytes,
        "max_field_bytes": tenant.max_field_bytes,
        "listen_timeout": tenant.listen_timeout,
    }
    kwargs.update(options)
    return ExmailClient(**kwargs)


def _chain(*gates: Callable[[int, ReleaseReason], Awaitable[None]]) -> Any:
    async def gate(shard: int, reason: ReleaseReason) -> None:
        for one in gates:
            await one(shard, reason)

    return gate


def _static_sharding(settings: Settings, hostname: str | None) -> Callable[[], ShardingStatus]:
    sh = settings.sharding
    described = ShardingStatus(
        mode="static",
        replica=sh.resolved_replica_id(hostname),
        shards=sh.count,
        owned=(sh.resolved_index(hostname),),
        live=(),
        standby=False,
    )
    return lambda: described
