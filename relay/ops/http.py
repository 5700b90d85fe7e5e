"""The operations HTTP server: health probes, Prometheus metrics, and the status page.

Where it sits: beside the pipeline, reading :class:`relay.runtime.supervisor.RelayService`; it
never touches Exmail or RabbitMQ itself, so an upstream outage can't turn ``/livez``
red and cause a restart storm.

| path | answers |
|---|---|
| ``/livez`` | 200 while the event loop answers and the supervisor's tasks live |
| ``/readyz`` | 200 or 503, JSON ``{ok, failing}`` naming each failing part and why |
| ``/metrics`` | Prometheus text format |
| ``/status.json`` | the status data (``?q=&page=&per_page=``: one page of tenants) |
| ``/`` | the status page (HTML, server-rendered, refreshes from ``/status.json``; charts of
  the last hour from :mod:`relay.ops.sampler`; ``?q=&page=&per_page=`` as status.json) |
| ``/v1/...`` | the API gateway (:mod:`relay.gateway`; its own client keys, 404 with none) |
| ``/sso/{tenant}/{email}`` | signed SSO links for browsers (:mod:`relay.gateway.sso_links`) |
| ``/admin/v1/...`` | the admin API (:mod:`relay.ops.admin`; its own token, 404 with none) |
| ``/callback/{tenant}`` | the second API's new-mail callback (:mod:`relay.gateway.callback`) |
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import SecretStr

from relay.core.bearer import TokenSource
from relay.gateway import Gateway, gateway_app
from relay.gateway.callback import CALLBACK_PREFIX, CallbackReceiver
from relay.gateway.routes import GATEWAY
from relay.gateway.sso_links import gateway_sso_route
from relay.ops.admin import AdminApi, admin_off_app
from relay.ops.admin_routes import admin_app
from relay.ops.auth import auth_middleware
from relay.ops.history import History
from relay.ops.listing import PAGING_PARAMS, QueryError, page_status, parse_query
from relay.ops.page import render_status_page
from relay.ops.page_charts import render_charts
from relay.ops.sampler import Sampler
from relay.ops.token_file import LiveTokens
from relay.runtime.status import ClientStatus, Status
from relay.runtime.supervisor import RelayService

__all__ = ["SAMPLER", "OpsServer", "build_app"]

SERVICE: web.AppKey[RelayService] = web.AppKey("service", RelayService)
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)
SAMPLER: web.AppKey[Sampler] = web.AppKey("sampler", Sampler)
TOKEN_FILES: web.AppKey[tuple[LiveTokens, ...]] = web.AppKey("token_files", tuple)


@dataclass(frozen=True, slots=True)
class PageOptions:
    show_content: bool = False
    recent: int = 50


OPTIONS: web.AppKey[PageOptions] = web.AppKey("options", PageOptions)

PROBES = frozenset({"/livez", "/readyz", "/metrics"})

# Figures change every second: never serve them from a cache.
NO_STORE = {"Cache-Control": "no-store"}
# The page is self-contained: nothing but its own inline style and script, and fetches
# to this origin (status.json).
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, ensure_ascii=False, default=str),
        status=status,
        content_type="application/json",
        headers=NO_STORE,
    )


async def livez(request: web.Request) -> web.Response:
    liveness = request.app[SERVICE].alive()
    return _json(liveness.to_json(), 200 if liveness.alive else 503)


async def readyz(request: web.Request) -> web.Response:
    health = await request.app[SERVICE].health()
    return _json(health.to_json(), 200 if health.healthy else 503)


async def metrics_view(request: web.Request) -> web.Response:
    await request.app[SERVICE].refresh_stats()
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _status(request: web.Request) -> Status:
    options = request.app[OPTIONS]
    status = await request.app[SERVICE].status(
        show_content=options.show_content, recent=options.recent
    )
    files = request.app[TOKEN_FILES]
    for live in files:
        live.current()  # a status read checks the token files too
    warnings = tuple(live.warning for live in files if live.warning is not None)
    if warnings:
        status = dataclasses.replace(status, config_warnings=warnings)
    gateway = request.app.get(GATEWAY)
    if gateway is None:
        return status
    clients = tuple(
        ClientStatus(
            name=c.name,
            tenants=tuple(sorted(c.tenants)),
            scopes=tuple(sorted(c.scopes)),
            last_used_at=gateway.clients.use[c.name].last_used_at,
            requests=gateway.clients.use[c.name].requests,
        )
        for c in gateway.clients.clients
    )
    return dataclasses.replace(status, clients=clients)


async def status_json(request: web.Request) -> web.Response:
    status = await _status(request)
    if any(name in request.query for name in PAGING_PARAMS):
        try:
            status = page_status(status, parse_query(request.query))
        except QueryError as exc:
            return _json({"error": str(exc)}, 400)
    return _json(status.to_json())


async def status_page(request: web.Request) -> web.Response:
    try:
        query = parse_query(request.query)
    except QueryError as exc:
        return web.Response(text=f"{exc}\n", status=400, headers=NO_STORE)
    status = page_status(await _status(request), query)
    sampler = request.app[SAMPLER]
    history = sampler.history
    charts = render_charts(
        history.samples(), now=status.now, span=history.span, error=sampler.last_error
    )
    return web.Response(
        text=render_status_page(status, charts=charts),
        content_type="text/html",
        charset="utf-8",
        headers=PAGE_HEADERS,
    )


def build_app(
    service: RelayService,
    *,
    auth_token: TokenSource | None = None,
    basic_auth: tuple[str, SecretStr] | None = None,
    protect_probes: bool = False,
    show_content: bool = False,
    recent: int = 50,
    registry: CollectorRegistry = REGISTRY,
    gateway: Gateway | None = None,
    admin: AdminApi | None = None,
    callback: CallbackReceiver | None = None,
    history: History | None = None,
) -> web.Application:
    """The ops server's app. ``history``: where the status page's charts come from
    (default: the last hour, one point every 10 s), sampled from ``registry`` while the
    app runs."""
    middlewares: list[Middleware] = []
    if auth_token is not None or basic_auth is not None:
        open_paths = frozenset() if protect_probes else PROBES
        middlewares.append(
            auth_middleware(
                tokens=auth_token,
                basic=basic_auth,
                open_paths=open_paths,
                open_prefixes=("/v1/", "/sso/", "/admin/", CALLBACK_PREFIX),
            )
        )
    app = web.Application(middlewares=middlewares)
    if gateway is not None:
        app[GATEWAY] = gateway
    app[SERVICE] = service
    sources = (auth_token, None if admin is None else admin.tokens)
    app[TOKEN_FILES] = tuple(s for s in sources if isinstance(s, LiveTokens))
    app[METRICS] = registry
    app[OPTIONS] = PageOptions(show_content=show_content, recent=recent)
    app[SAMPLER] = sampler = Sampler(
        registry, history if history is not None else History(interval=10.0, span=3600.0)
    )
    app.cleanup_ctx.append(sampler.context)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/", status_page)
    app.add_subapp("/v1/", gateway_app(gateway))
    app.add_subapp("/admin/v1/", admin_off_app() if admin is None else admin_app(admin))
    if gateway is not None and gateway.clients:
        app.add_routes([gateway_sso_route(gateway)])
    if callback is not None:  # signed by the tenant's Token, not by [http] auth
        app.add_routes(callback.routes())
    return app


class OpsServer:
    """Serves :func:`build_app` on ``host:port`` (port 0 picks a free one)."""

    def __init__(self, app: web.Application, *, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def app(self) -> web.Application:
        return self._app

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host  # noqa: S104
        return f"http://{host}:{self.port}/"

    async def __aenter__(self) -> OpsServer:
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            reason = exc.strerror or str(exc)
            message = f"cannot serve [http] on {self._host}:{self._port}: {reason}"
            raise OSError(exc.errno, message) from exc
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
