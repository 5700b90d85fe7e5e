"""Wiring of the second API's directory polls: the ``api = "api2"`` tenants with a
``contact_secret`` and a ``directory_interval`` become a
:class:`relay.runtime.polling.DirectoryPollers`.

Static sharding: this replica's shard's api2 tenants (``Settings.shard_tenants``) are
polled all along. Lease mode: every enabled api2 tenant may be polled here, but only
while this replica holds its shard; each tenant's token is fenced by that lease, as a
listener's is (docs/leases.md, "Directory polls of api2 tenants").
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence

import aiohttp

from relay.app.settings import Settings, TenantSettings
from relay.core.events import Event
from relay.core.listing_guard import DeletionGuard
from relay.core.shards import shard_of
from relay.exmail import TokenCache
from relay.exmail2 import App, Exmail2Client
from relay.journal import Journal
from relay.runtime.callback_status import CallbackBoard
from relay.runtime.checkpoints import CheckpointStore
from relay.runtime.directory2 import DirectoryPoller, PollState
from relay.runtime.leases import LeaseManager
from relay.runtime.listings import ListingCarrier, ListingStore
from relay.runtime.observer import Observer, upstream_observer
from relay.runtime.pacing import Pacer
from relay.runtime.polling import DirectoryPollers

__all__ = [
    "LISTING_CAP",
    "deletion_guard",
    "directory_pollers",
    "listing_store",
    "polled_tenants",
    "polls_directory",
]

LISTING_CAP = 32 * 1024 * 1024


def polled_tenants(settings: Settings, hostname: str | None) -> list[TenantSettings]:
    """The api2 tenants whose directories this replica may poll."""
    candidates = (
        [t for t in settings.tenants if t.enabled]
        if settings.sharding_mode == "lease"
        else settings.shard_tenants(hostname)
    )
    return [t for t in candidates if polls_directory(t)]


def polls_directory(tenant: TenantSettings) -> bool:
    """Whether ``tenant``'s directory is polled (on the replica that runs it)."""
    t = tenant
    return t.api == "api2" and t.contact_secret is not None and t.directory_interval > 0


async def directory_pollers(
    stack: contextlib.AsyncExitStack,
    *,
    settings: Settings,
    hostname: str | None,
    journal: Journal,
    route: Callable[[Event], Sequence[str]],
    session: aiohttp.ClientSession,
    board: CallbackBoard,
    observer: Observer,
    leases: LeaseManager | None,
    tokens: Mapping[str, Mapping[App, TokenCache]] | None = None,
    carrier: ListingCarrier | None = None,
    pacer: Pacer | None = None,
) -> DirectoryPollers | None:
    """The pollers (None: no tenant to poll). Every poll's events and status go through
    ``board``, so they show on the tenant's row with its callbacks. ``tokens``: each
    tenant's per-application token caches held by the relay's own client of it
    (:func:`relay.app.api2_clients.open_clients2`), so the poll and the gateway share one
    ``directory`` token; a tenant not in it gets caches of its own. ``pacer``: the
    replica's (shared with every tenant): a poller's first listing after a start or a
    takeover takes a turn, its token fetched in it, and every token fetch of caches made
    here waits its turn (docs/leases.md, "Pacing")."""
    tenants = {t.name: t for t in polled_tenants(settings, hostname)}
    if not tenants:
        return None
    clients: dict[str, Exmail2Client] = {}
    for tenant in tenants.values():
        secret, corpid = tenant.contact_secret, tenant.corpid
        assert secret is not None and corpid is not None  # validated, filtered
        fence = None
        if leases is not None:
            shard = shard_of(tenant.name, leases.shards)
            fence = _holds(leases, shard)
        client = Exmail2Client(
            corpid=corpid,
            secrets={App.DIRECTORY: secret},
            base_url=tenant.api_url,
            session=session,
            timeout=tenant.request_timeout,
            # user/list of the whole company grows with it (about 225 bytes a member):
            # never capped below 32 MiB (about 140 000 members).
            max_response_bytes=max(tenant.max_response_bytes, LISTING_CAP),
            on_request=upstream_observer(observer),
            token_fence=fence,
            token_pace=None if pacer is None else pacer.turn,
            tokens=(tokens or {}).get(tenant.name),
        )
        clients[tenant.name] = await stack.enter_async_context(client)
    states = {name: PollState(name, t.directory_interval) for name, t in tenants.items()}
    for name, state in states.items():
        tally = board.tallies.get(name)
        if tally is not None:
            tally.directory = state.to_status  # tenants[].directory on /status.json

    def make(name: str, state: PollState) -> DirectoryPoller:
        cache = clients[name].tokens[App.DIRECTORY]
        return DirectoryPoller(
            tenant=name,
            client=clients[name],
            journal=journal,
            route=route,
            state=state,
            observer=board,
            bootstrap=tenants[name].directory_bootstrap,
            guard=deletion_guard(tenants[name]),
            carrier=carrier,
            turn=cache.turn if cache.paced else None,  # the first listing's turn
        )

    return DirectoryPollers(
        states=states,
        make_poller=make,
        leases=leases,
        stop_timeout=settings.shutdown.timeout,
    )


def listing_store(
    settings: Settings, checkpoints: CheckpointStore, observer: Observer
) -> ListingStore:
    """Lease mode's api2 listing snapshots: on the checkpoint store's connection, under
    ``[sharding] prefix``, signed with the deployment secret (docs/leases.md)."""
    sh = settings.sharding
    return ListingStore(
        link=checkpoints.link, secrets=sh.secret, prefix=sh.prefix, observer=observer
    )


def deletion_guard(tenant: TenantSettings) -> DeletionGuard:
    """The tenant's mass-deletion guard (``directory_max_deletions`` and the rest)."""
    return DeletionGuard(
        max_deletions=tenant.directory_max_deletions,
        max_share=tenant.directory_max_deletion_share,
        confirm_polls=tenant.directory_confirm_polls,
    )


def _holds(leases: LeaseManager, shard: int) -> Callable[[], bool]:
    return lambda: leases.holds(shard)
