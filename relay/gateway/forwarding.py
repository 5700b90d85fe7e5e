"""Forwarding: a gateway request for a tenant another replica owns goes to that replica.

Where it sits: with ``[sharding] count > 1`` each replica serves only its share of the
tenants (:func:`relay.core.shards.shard_of`), but a client may call any replica (one
Service in front of the StatefulSet). When a route's tenant is not served here,
:func:`relay.gateway.routes._tenant` asks the **owner seam** (``owner_of(tenant) ->
peer id or None``) and raises :class:`Misdirected`; the gateway's middleware then hands
the request to :func:`forward_or_refuse`:

- with a peer URL template (``[gateway] peer_url``, ``{index}`` the owner's id) the
  request is sent on: same method, path, query, ``Authorization``, ``Content-Type`` and
  body (read whole first, :mod:`~relay.gateway.request_body`), within
  ``forward_timeout``; the owner's answer comes back unchanged (status, body,
  ``Content-Type``, ``Retry-After``, ``WWW-Authenticate``, ``Location``, and the
  security headers ``Cache-Control``, ``Referrer-Policy``, ``Content-Security-Policy``,
  ``X-Content-Type-Options``);
- without one: ``421 Misdirected Request`` (problem+json) naming the owner, so the
  client can call it itself.

A forwarded request carries ``Via: 1.1 exmail-relay-{me}`` and an RFC 7239
``Forwarded`` element. A replica never forwards a request that already carries the
relay's ``Via`` (one hop at most): if the owner it was sent to does not own the tenant
either (the replicas disagree on the sharding), it answers ``508 Loop Detected``.

The static owner (:func:`static_owner`) is the shard arithmetic; lease mode plugs in
"the replica holding the tenant's lease" through the same seam, as signed presence tells
(:mod:`relay.core.presence`): a forged presence message names no owner. A URL is built
only from an id that is a DNS label, so no id can point the request elsewhere. Authentication,
scopes and tenants are checked here before forwarding (every replica has the same
``[[clients]]``) and again by the owner.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from relay.core.presence import valid_replica_id
from relay.core.shards import shard_of
from relay.gateway.problems import Problem
from relay.gateway.request_body import read_body

__all__ = [
    "VIA_NAME",
    "Forwarder",
    "Misdirected",
    "OwnerLookup",
    "forward_or_refuse",
    "lease_owner",
    "static_owner",
]

OwnerLookup = Callable[[str], str | None]
"""The id of the replica that owns a tenant not served here (``None``: nobody, 404)."""

VIA_NAME = "exmail-relay"
_REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept")
# Everything a local answer may set, the security headers included (the /sso pages and
# redirects, /v1/docs): a forwarded answer must be exactly as safe as a local one.
_ANSWER_HEADERS = (
    "Content-Type",
    "Cache-Control",
    "Retry-After",
    "WWW-Authenticate",
    "Location",
    "Referrer-Policy",
    "Content-Security-Policy",
    "X-Content-Type-Options",
)


class Misdirected(Exception):
    """The request's tenant is owned by replica ``owner``, not by this one."""

    def __init__(self, tenant: str, owner: str) -> None:
        super().__init__(f"tenant {tenant!r} is served by replica {owner}")
        self.tenant = tenant
        self.owner = owner


def static_owner(tenants: Collection[str], *, count: int, me: int) -> OwnerLookup:
    """Static sharding's owner: ``shard_of(tenant, count)``, for the enabled ``tenants``."""
    known = frozenset(tenants)

    def owner_of(tenant: str) -> str | None:
        if count <= 1 or tenant not in known:
            return None
        index = shard_of(tenant, count)
        return None if index == me else str(index)

    return owner_of


def lease_owner(
    tenants: Collection[str], *, shards: int, holder_of: Callable[[int], str | None], me: str
) -> OwnerLookup:
    """Lease mode's owner: the replica holding the tenant's shard, as *authenticated*
    presence tells (``LeaseManager.holder_of``: signed with the deployment secret, of our
    shard space, a DNS-label id); ``None`` when it is this one, or nobody right now."""
    known = frozenset(tenants)

    def owner_of(tenant: str) -> str | None:
        if tenant not in known:
            return None
        holder = holder_of(shard_of(tenant, shards))
        return None if holder == me else holder

    return owner_of


@dataclass(frozen=True, slots=True)
class Forwarder:
    """Sends requests on to peers at ``template`` with the owner's id for ``{index}``
    (static mode: its ordinal) or ``{replica}`` (lease mode: its replica id, which is
    the pod's name in a StatefulSet)."""

    session: aiohttp.ClientSession
    template: str
    me: str
    timeout: float = 15.0

    def url(self, owner: str, path_qs: str) -> str:
        """The owner's URL; ``owner`` must be a DNS label (an ordinal, a replica id), so
        it cannot change the host, port or path the template gives."""
        if not valid_replica_id(owner):
            raise ValueError("the owner's id is not a DNS label")
        base = self.template.replace("{index}", owner).replace("{replica}", owner)
        return base.rstrip("/") + path_qs

    async def forward(self, request: web.Request, owner: str, body: bytes) -> web.Response:
        headers = {h: request.headers[h] for h in _REQUEST_HEADERS if h in request.headers}
        headers["Via"] = f"1.1 {VIA_NAME}-{self.me}"
        host = request.host.replace('"', "")
        remote = (request.remote or "unknown").replace('"', "")
        headers["Forwarded"] = f'for="{remote}";host="{host}";proto={request.scheme}'
        try:
            url = self.url(owner, request.path_qs)
        except ValueError:
            raise Problem(
                502, "peer-invalid", "The owning replica's id is not valid",
                "the replica said to own this tenant has an id that is not a DNS label",
            ) from None  # fmt: skip
        try:
            async with self.session.request(
                request.method,
                url,
                data=body or None,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as answer:
                payload = await answer.read()
                kept = {h: answer.headers[h] for h in _ANSWER_HEADERS if h in answer.headers}
                status = answer.status
        except TimeoutError:
            raise Problem(
                504, "peer-timeout", "The owning replica did not answer in time",
                f"replica {owner} did not answer within {self.timeout:g} s",
            ) from None  # fmt: skip
        except aiohttp.ClientError as exc:
            raise Problem(
                502, "peer-unreachable", "The owning replica is unreachable",
                f"replica {owner}: {type(exc).__name__}",
            ) from None  # fmt: skip
        kept["Via"] = f"1.1 {VIA_NAME}-{self.me}"
        return web.Response(status=status, body=payload, headers=kept)


def _hopped(request: web.Request) -> bool:
    return any(VIA_NAME in value for value in request.headers.getall("Via", []))


async def forward_or_refuse(
    request: web.Request,
    exc: Misdirected,
    forwarder: Forwarder | None,
    max_body: int,
    *,
    moving: bool = False,
) -> web.Response:
    """Forward to the owner, or the problem saying why not (421, 508, 413). ``moving``
    (lease mode): the tenant is configured here, so a request forwarded here that finds
    it owned elsewhere met a handoff under way (503, try again), not a misconfiguration."""
    if _hopped(request) and moving:
        raise Problem(
            503, "tenant-moving", "Tenant changing owner",
            f"tenant {exc.tenant!r} changed owner while the request was forwarded; try again",
            headers={"Retry-After": "1"},
        )  # fmt: skip
    if _hopped(request):
        raise Problem(
            508, "forwarding-loop", "Loop detected",
            f"tenant {exc.tenant!r} was forwarded here, but this replica does not serve it "
            f"either (it takes replica {exc.owner} for the owner): check [sharding]",
            extra={"owner": exc.owner},
        )  # fmt: skip
    if forwarder is None:
        raise Problem(
            421, "misdirected", "Misdirected request",
            f"tenant {exc.tenant!r} is served by replica {exc.owner}; call that replica "
            "(or set [gateway] peer_url so replicas forward)",
            extra={"owner": exc.owner},
        )  # fmt: skip
    body = await read_body(request, max_body)  # whole, or a problem: never half a body
    return await forwarder.forward(request, exc.owner, body)
