"""The second API's clients of the configured ``api = "api2"`` tenants.

Where it sits: the composition root's helper (:mod:`relay.app.wiring` calls it), so the
settings are read here, at the edge. A tenant's keys name the console's applications
(``contact_secret``, ``option_secret``, ``log_secret``...); :data:`SECRET_APPS` maps
each key prefix to the :class:`relay.exmail2.App` of the client, whose token it fetches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import aiohttp
from pydantic import SecretStr

from relay.app.settings import GatewaySettings, TenantSettings
from relay.exmail2 import App, Exmail2Client
from relay.gateway import GatewayTenant
from relay.gateway.limits import TenantGate
from relay.runtime.observer import Observer, upstream_observer

__all__ = ["SECRET_APPS", "api2_secrets", "client2_for", "gateway_tenants2", "open_clients2"]

SECRET_APPS: Final[dict[str, App]] = {
    "contact": App.DIRECTORY,
    "sso": App.SSO,
    "newmail": App.NEWMAIL,
    "option": App.SETTINGS,
    "log": App.LOGS,
}
"""``<prefix>_secret`` of ``[[tenants]]`` -> the application it is the secret of."""


def api2_secrets(tenant: TenantSettings) -> dict[App, SecretStr]:
    """The applications an api2 tenant configured, each with its secret."""
    out: dict[App, SecretStr] = {}
    for prefix, app in SECRET_APPS.items():
        secret = tenant.api2_secret(prefix)
        if secret is not None:
            out[app] = secret
    return out


def client2_for(tenant: TenantSettings, **options: Any) -> Exmail2Client:
    """The second API's client of one ``api = "api2"`` tenant; ``options`` add or override
    keywords (``session``, ``tokens`` to share another client's token caches, ...)."""
    if tenant.corpid is None:
        raise ValueError(f'tenant {tenant.name!r} is not api = "api2"')
    kwargs: dict[str, Any] = {
        "corpid": tenant.corpid,
        "secrets": api2_secrets(tenant),
        "base_url": tenant.api_url,
        "timeout": tenant.request_timeout,
        "max_response_bytes": tenant.max_response_bytes,
    }
    kwargs.update(options)
    return Exmail2Client(**kwargs)


async def open_clients2(
    stack: contextlib.AsyncExitStack,
    tenants: Iterable[TenantSettings],
    *,
    session: aiohttp.ClientSession,
    observer: Observer,
    fence: Callable[[str], Callable[[], bool]] | None = None,
    pace: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Exmail2Client]:
    """One client per api2 tenant of ``tenants``, on ``session``, closed with ``stack``:
    the holder of the tenant's per-application token caches (every other client of the
    tenant, the gateway's too, is given them: ``tokens=``). ``fence(name)``, lease mode:
    a token is fetched only while this replica holds the tenant's shard. ``pace``: the
    replica's :meth:`relay.runtime.pacing.Pacer.turn`, shared with the first API's
    tenants: every token fetch of these caches (the gateway's and the directory poller's
    too, which share them) waits its turn; a fresh cached token never waits."""
    clients: dict[str, Exmail2Client] = {}
    for tenant in tenants:
        if tenant.api != "api2":
            continue
        handle = observer.tenant(tenant.name)
        client = client2_for(
            tenant,
            session=session,
            on_request=upstream_observer(observer),
            on_token=lambda app, reason, handle=handle: handle.token_fetched(reason),
            token_fence=None if fence is None else fence(tenant.name),
            token_pace=pace,
        )
        clients[tenant.name] = await stack.enter_async_context(client)
    return clients


def gateway_tenants2(
    tenants: Iterable[TenantSettings],
    clients: Mapping[str, Exmail2Client],
    session: aiohttp.ClientSession,
    gateway: GatewaySettings,
    observer: Observer,
) -> dict[str, GatewayTenant]:
    """The gateway's view of the api2 tenants of ``clients``: a client of its own on the
    gateway's ``session`` over the same token caches, and the tenant's gate."""
    out: dict[str, GatewayTenant] = {}
    for tenant in tenants:
        held = clients.get(tenant.name)
        if held is None:
            continue
        client = client2_for(
            tenant,
            session=session,
            on_request=upstream_observer(observer),
            tokens=held.tokens,
            read_retries=0,  # as for the first API: the caller retries, told by 503
        )
        gate = TenantGate(gateway.tenant_concurrency, queue_timeout=gateway.queue_timeout)
        out[tenant.name] = GatewayTenant(tenant.name, client, gate)
    return out
