"""The admin API across replicas: who the other replicas are, and calling them.

Where it sits: under :mod:`relay.ops.admin`. Each replica keeps its own journal, so its
dead letters, its endpoint switches and its journal file are its own: a list gathers
every replica's part, a mutation goes to every replica (each applies it to what it
holds) or to the one the caller names. Which replicas exist is never taken from the
request: it is :attr:`Peers.live`, which lease mode fills from *authenticated* presence
(``LeaseManager.live``: signed with the deployment secret, DNS-label ids) and static
mode from the shard count; a replica named in a request that is not among them is
reported unreachable, never called. The address is ``[gateway] peer_url`` with the
id for ``{replica}`` or ``{index}``, as the gateway forwards (:mod:`relay.gateway.forwarding`).

A call to a peer carries the admin token (every replica accepts the same ``[http]
admin_token``; with several in ``admin_token_file``, the first, as the file reads now),
``Via: 1.1 exmail-relay-{me}`` (a replica answers such a call from its own journal
only: one hop, no loops) and :data:`ACTOR_HEADER`, the original caller (its token's name
or fingerprint), for the holder's audit line. A peer that cannot be reached, times out
or answers an error is a :class:`PeerFailure`, which the answer reports by replica.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import aiohttp

from relay.core.bearer import TokenSource
from relay.core.presence import valid_replica_id
from relay.gateway.forwarding import VIA_NAME

__all__ = ["ACTOR_HEADER", "PeerFailure", "Peers"]

ACTOR_HEADER = "X-Relay-Admin-Actor"


@dataclass(frozen=True, slots=True)
class PeerFailure:
    """Why a replica's part is missing: safe to show (no token, no URL credentials)."""

    replica: str
    error: str

    def to_json(self) -> dict[str, Any]:
        return {"replica": self.replica, "ok": False, "error": self.error}


@dataclass(frozen=True, slots=True)
class Peers:
    """This replica (``me``) and the others: ``live()`` every replica id known alive,
    ``me`` included; ``template`` the peer URL (``None``: peers cannot be called);
    ``tokens`` the admin tokens, whose first is sent."""

    me: str
    live: Callable[[], Collection[str]]
    template: str | None = None
    session: aiohttp.ClientSession | None = None
    tokens: TokenSource | None = None
    timeout: float = 15.0

    def __repr__(self) -> str:
        return f"Peers(me={self.me!r}, template={self.template!r})"

    def known(self) -> list[str]:
        """Every replica to gather from, this one first, then by id."""
        others = sorted(r for r in set(self.live()) if r != self.me and valid_replica_id(r))
        return [self.me, *others]

    def _url(self, replica: str, path_qs: str) -> str:
        assert self.template is not None and valid_replica_id(replica)
        base = self.template.replace("{index}", replica).replace("{replica}", replica)
        return base.rstrip("/") + path_qs

    async def call(
        self,
        replica: str,
        method: str,
        path_qs: str,
        body: Any,
        *,
        actor: str,
        within: float | None = None,
    ) -> dict[str, Any] | PeerFailure:
        """``method path_qs`` on ``replica`` with ``body`` as JSON: its JSON answer
        (within ``within`` seconds, default the peers' own); any other status a failure."""
        got = await self.exchange(replica, method, path_qs, body, actor=actor, within=within)
        if isinstance(got, PeerFailure):
            return got
        status, data = got
        if status != 200:
            detail = data.get("detail")
            return PeerFailure(replica, f"answered {status}" + (f": {detail}" if detail else ""))
        return data

    async def exchange(
        self,
        replica: str,
        method: str,
        path_qs: str,
        body: Any,
        *,
        actor: str,
        within: float | None = None,
    ) -> tuple[int, dict[str, Any]] | PeerFailure:
        """As :meth:`call`, but any status with a JSON object (a problem too) is an
        answer: ``(status, object)``; no answer or no object is the failure."""
        within = self.timeout if within is None else within
        if replica not in self.known():
            return PeerFailure(replica, "not a live replica (as presence tells)")
        if self.template is None or self.session is None or self.tokens is None:
            return PeerFailure(replica, "no [gateway] peer_url: cannot call other replicas")
        headers = {
            "Authorization": f"Bearer {self.tokens.current().first.value}",
            "Via": f"1.1 {VIA_NAME}-{self.me}",
            ACTOR_HEADER: actor,
        }
        try:
            async with self.session.request(
                method,
                self._url(replica, path_qs),
                json=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=within),
            ) as answer:
                text = await answer.text()
                status = answer.status
        except TimeoutError:
            return PeerFailure(replica, f"no answer within {within:g} s")
        except aiohttp.ClientError as exc:
            return PeerFailure(replica, f"unreachable ({type(exc).__name__})")
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return PeerFailure(replica, f"answered {status}")
        return status, data
