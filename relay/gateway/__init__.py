"""``relay.gateway``: the Exmail API gateway, the ``/v1/`` routes of the relay's HTTP server.

OA systems call Exmail *through* the relay, so the relay stays the one owner of each
tenant's access token (Exmail allows one valid token per administrator account). The
modules, each named after what it holds:

- ``clients``: the API clients of ``[[clients]]``, their keys (Bearer, compared in
  constant time), tenants, scopes and last use;
- ``problems``: RFC 9457 ``application/problem+json`` errors, and how each Exmail error
  maps to an HTTP status;
- ``limits``: the per-client token bucket and the per-tenant concurrency gate;
- ``unread``: the unread-count cache fed from ``listen`` (through the observer seam);
- ``operations``: the ``openapi/{operation}`` table, validated like the client validates;
- ``operations2``: the second API's table (tenants with ``api = "api2"``), its bodies;
- ``catalogues``: which of the two tables a tenant takes, and the call a body becomes;
- ``upstream``: the shared routes' calls (user, unread, SSO) for a client of either API;
- ``routes``: the aiohttp sub-application (handlers, auth, metrics and the audit line);
- ``sso_links``: ``GET /sso/{tenant}/{email}``, the browser route of signed SSO links
  (signing itself is pure, in :mod:`relay.core.links`);
- ``tokens``: the token service (``GET .../token``, ``POST .../token/refresh``), handing
  out the tenant's one token, single flight.

Where it sits: above :mod:`relay.runtime` (it reads the listeners' states and wraps the
observer), below :mod:`relay.ops`, which mounts it, and :mod:`relay.app`, which builds a
second :class:`~relay.exmail.ExmailClient` per tenant on the listener's token cache
(same token, separate connection pool), or for a tenant of the second API a
:class:`~relay.exmail2.Exmail2Client` on the relay's per-application token caches. See
``docs/gateway.md``.
"""

from relay.gateway.clients import ApiClient, ClientRegistry
from relay.gateway.routes import Gateway, GatewayTenant, gateway_app
from relay.gateway.unread import UnreadCache, UnreadFeed

__all__ = [
    "ApiClient",
    "ClientRegistry",
    "Gateway",
    "GatewayTenant",
    "UnreadCache",
    "UnreadFeed",
    "gateway_app",
]
