"""``relay.runtime``: the running relay, moving events from Exmail to the sinks.

- :mod:`relay.runtime.listener`: one long-poll listener per tenant, committing events;
- :mod:`relay.runtime.translate`: what a push means, as pure functions;
- :mod:`relay.runtime.drainer`: one drainer per sink, claiming and settling deliveries,
  with :mod:`relay.runtime.settle` (shared settle writes) and
  :mod:`relay.runtime.ratelimit` (the token bucket);
- :mod:`relay.runtime.supervisor`: :class:`RelayService`, which owns, restarts and stops
  every worker task, and answers health and status;
- :mod:`relay.runtime.status`: the typed status and health they answer;
- :mod:`relay.runtime.observer`: the seam through which all of them report metrics;
- :mod:`relay.runtime.leases`: shard leases held as broker locks (not wired into ``run`` yet);
- :mod:`relay.runtime.heap`: the garbage-collector freeze after start-up.
"""
