"""``relay.gateway``: the relay as the one owner of each tenant's Exmail token, serving OA
systems over HTTP (issue 13).

- :mod:`relay.gateway.sso_links`: ``GET /sso/{tenant}/{email}``, the browser route of
  signed SSO links (signing itself is pure, in :mod:`relay.links`);
- :mod:`relay.gateway.tokens`: the token service (``GET .../token``, ``POST
  .../token/refresh``), handing out the tenant's one token, single flight.
"""
