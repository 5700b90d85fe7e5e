"""The other replicas, as the gateway and the admin API reach them: who owns a tenant,
where a peer answers (``[gateway] peer_url``), and the admin API's view of the shards.

Where it sits: the composition root's helpers (:mod:`relay.app.wiring` calls them), so
the settings are read here, at the edge. Static mode knows its peers by arithmetic (the
ordinals below ``[sharding] count``); lease mode by *authenticated* presence
(:class:`~relay.runtime.leases.LeaseManager`: signed with the deployment secret).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp

from relay.app.directory2 import polls_directory
from relay.app.ops_tokens import token_source
from relay.app.settings import Settings
from relay.core.shards import shard_of
from relay.gateway.forwarding import Forwarder, OwnerLookup, lease_owner, static_owner
from relay.journal import Journal
from relay.ops.admin import AdminApi
from relay.ops.admin_peers import Peers
from relay.runtime.leases import LeaseManager
from relay.runtime.polling import DirectoryPollers

__all__ = ["admin_api", "forwarder", "owner_lookup", "serves"]


def owner_lookup(
    settings: Settings, hostname: str | None, leases: LeaseManager | None
) -> OwnerLookup:
    """Who owns a tenant not served here: the shard arithmetic (static), or the replica
    holding its shard's lease as presence tells (lease)."""
    enabled = [t.name for t in settings.tenants if t.enabled]
    if leases is None:
        sh = settings.sharding
        return static_owner(enabled, count=sh.count, me=sh.resolved_index(hostname))
    return lease_owner(
        enabled, shards=leases.shards, holder_of=leases.holder_of, me=leases.replica_id
    )


def serves(leases: LeaseManager | None) -> Callable[[str], bool]:
    """Lease mode: the gateway serves a tenant only while holding its shard's lease."""
    if leases is None:
        return lambda tenant: True
    return lambda tenant: leases.holds(shard_of(tenant, leases.shards))


async def forwarder(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    hostname: str | None,
    leases: LeaseManager | None,
) -> Forwarder | None:
    """Sends requests for another replica's tenants there (``[gateway] peer_url``)."""
    g = settings.gateway
    if g.peer_url is None or (leases is None and settings.sharding.count == 1):
        return None
    session = await stack.enter_async_context(aiohttp.ClientSession())
    if leases is not None:
        return Forwarder(session, g.peer_url, leases.replica_id, timeout=g.forward_timeout)
    me = str(settings.sharding.resolved_index(hostname))
    return Forwarder(session, g.peer_url, me, timeout=g.forward_timeout)


def _shards(
    settings: Settings, me: str, leases: LeaseManager | None
) -> Callable[[], dict[str, Any]]:
    """The admin API's ``GET shards``: each shard's holder and enabled tenants."""
    enabled = [t.name for t in settings.tenants if t.enabled]
    count = settings.sharding.count if leases is None else leases.shards

    def describe() -> dict[str, Any]:
        by_shard: dict[int, list[str]] = {shard: [] for shard in range(count)}
        for tenant in sorted(enabled):
            by_shard[shard_of(tenant, count)].append(tenant)
        holders: dict[int, str | None]
        if leases is None:
            holders = {s: str(s) for s in by_shard}
            live = [str(s) for s in by_shard]
        else:
            holders = {s: leases.holder_of(s) for s in by_shard}
            live = sorted(leases.live)
        items = [
            {"shard": s, "holder": holders[s], "tenants": tenants}
            for s, tenants in sorted(by_shard.items())
        ]
        return {
            "mode": "static" if leases is None else "lease",
            "replica": me,
            "shards": count,
            "live": live,
            "items": items,
        }

    return describe


async def admin_api(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    hostname: str | None,
    leases: LeaseManager | None,
    journal: Journal,
    configured: frozenset[str],
    pollers: DirectoryPollers | None = None,
) -> AdminApi | None:
    """The admin API, when ``[http] admin_token`` is set; its peers are the live
    replicas (lease) or the ordinals (static), reached at ``[gateway] peer_url`` with the
    first of the admin tokens (``admin_token_file`` as it reads now). ``pollers``: this
    replica's directory polls; a tenant another replica polls is forwarded to its owner,
    as the gateway finds it (:func:`owner_lookup`)."""
    tokens = token_source(settings.http, "admin_token")
    if tokens is None or not settings.http.enabled:
        return None
    if leases is not None:
        me = leases.replica_id
        live: Callable[[], frozenset[str]] = lambda: leases.live  # noqa: E731
    else:
        me = str(settings.sharding.resolved_index(hostname))
        everyone = frozenset(str(i) for i in range(settings.sharding.count))
        live = lambda: everyone  # noqa: E731
    g = settings.gateway
    session = None
    if g.peer_url is not None and (leases is not None or settings.sharding.count > 1):
        session = await stack.enter_async_context(aiohttp.ClientSession())
    peers = Peers(
        me=me,
        live=live,
        template=g.peer_url if session is not None else None,
        session=session,
        tokens=tokens,
        timeout=g.forward_timeout,
    )
    return AdminApi(
        tokens=tokens,
        journal=journal,
        peers=peers,
        endpoints=tuple(hook.name for hook in settings.webhooks),
        configured=configured,
        shards=_shards(settings, me, leases),
        max_body_bytes=settings.gateway.max_body_bytes,
        tenants=frozenset(t.name for t in settings.tenants if t.enabled),
        polled=frozenset(t.name for t in settings.tenants if t.enabled and polls_directory(t)),
        pollers=pollers,
        owner_of=owner_lookup(settings, hostname, leases),
    )
