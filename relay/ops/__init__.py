"""``relay.ops``: what the people who run the relay see.

- :mod:`relay.ops.http`: ``/livez``, ``/readyz``, ``/metrics``, ``/status.json`` and ``/``;
- :mod:`relay.ops.page`: the status page;
- :mod:`relay.ops.admin` (with ``admin_routes``, ``admin_peers``, ``admin_query``,
  ``admin_openapi``): the admin API, ``/admin/v1/``, across replicas;
- :mod:`relay.ops.metrics`: the Prometheus families and :class:`PrometheusObserver`;
- :mod:`relay.ops.logs`: JSON or text log lines, with secrets redacted.
"""
