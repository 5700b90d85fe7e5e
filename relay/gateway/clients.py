"""The API clients of ``[[clients]]``: who may call the gateway, for which tenants, with
which scopes, and when each last did.

Authentication is ``Authorization: Bearer <key>``. The offered key's SHA-256 is compared
with :func:`hmac.compare_digest` against the SHA-256 of *every* key of *every* client,
without stopping at the first match: digests have one length, so the time an answer
takes says nothing about which key matched, how much of one, or how long keys are. Keys
are :class:`~pydantic.SecretStr` in the settings and digests only inside
:class:`ClientRegistry`, whose repr names clients, never keys.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import SecretStr

from relay.core.bearer import header_bytes

__all__ = ["SCOPES", "ApiClient", "ClientRegistry", "ClientUse"]

SCOPES = ("sso", "read", "write", "token")


@dataclass(frozen=True, slots=True)
class ApiClient:
    """One ``[[clients]]`` entry. ``tenants`` empty: every tenant."""

    name: str
    keys: tuple[SecretStr, ...] = field(repr=False)
    tenants: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    rate: float = 10.0
    burst: int = 20
    link_secret: SecretStr | None = field(default=None, repr=False)
    """Signs this client's SSO links (``GET /sso/...``), for its tenants only."""
    single_use: bool = False
    """Each of this client's SSO links works once (until it expires)."""

    def may_use(self, tenant: str) -> bool:
        return not self.tenants or tenant in self.tenants


@dataclass(slots=True)
class ClientUse:
    """What the status page shows about a client's use (wall-clock seconds)."""

    last_used_at: float | None = None
    requests: int = 0


class ClientRegistry:
    """The configured clients; :meth:`authenticate` finds the one a header names."""

    def __init__(self, clients: Sequence[ApiClient]) -> None:
        self.clients = tuple(clients)
        self._keys = [(_digest(key.get_secret_value()), c) for c in clients for key in c.keys]
        self.use = {c.name: ClientUse() for c in clients}

    def __repr__(self) -> str:
        return f"<ClientRegistry {[c.name for c in self.clients]}>"

    def __bool__(self) -> bool:
        return bool(self.clients)

    def authenticate(self, header: str) -> ApiClient | None:
        """The client whose key the ``Authorization`` header carries, else None."""
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        offered = _digest(credentials.strip())
        found: ApiClient | None = None
        for key, client in self._keys:
            # No early exit: every key is compared, whatever matched before.
            if hmac.compare_digest(offered, key):
                found = client
        return found

    def used(self, client: ApiClient, at: float) -> None:
        use = self.use[client.name]
        use.last_used_at = at
        use.requests += 1

    def names(self) -> Iterable[str]:
        return (c.name for c in self.clients)


def _digest(key: str) -> bytes:
    return hashlib.sha256(header_bytes(key)).digest()  # a header's bytes, as they came
