"""``relay.core``: the relay's pure types and decisions. No I/O, no clock, no event loop.

- :mod:`relay.core.events`: events, their CloudEvents form and their derived ids;
- :mod:`relay.core.amqp_message`: an event as an AMQP message, structured or binary mode;
- :mod:`relay.core.routing`: which sinks an event goes to (the one :class:`Router`);
- :mod:`relay.core.delivery`: deliveries, outcomes, settlements and :func:`decide`;
- :mod:`relay.core.backoff`: backoff, retry schedules, ``Retry-After``;
- :mod:`relay.core.signing`: Standard Webhooks signatures;
- :mod:`relay.core.redact`: secrets masked before text leaves the process;
- :mod:`relay.core.shards`: tenants to shards, fair shares and the lease planner;
- :mod:`relay.core.links`: signed SSO links (sign, verify, single-use memory).

Every layer above builds on these; this package imports none of them.
"""
