"""exmail-relay: real-time mail and directory events out of Tencent Exmail.

The package is laid out in layers; imports only point down (``docs/architecture.md``,
checked by ``tests/layout``):

- :mod:`relay.cli` -- the command line;
- :mod:`relay.app` -- settings, their loader, the composition root, the demo;
- :mod:`relay.ops` -- probes, metrics, the status page, logs;
- :mod:`relay.runtime` -- listeners, drainers, the supervisor;
- :mod:`relay.sinks` -- RabbitMQ, webhook and console adapters;
- :mod:`relay.journal`, :mod:`relay.exmail`, :mod:`relay.emulator` -- the store, the
  typed client of the BizMail OpenApi, and an emulator of the Exmail server;
- :mod:`relay.core` -- pure types and decisions.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
