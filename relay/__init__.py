"""exmail-relay: real-time mail and directory events out of Tencent Exmail.

The package is laid out along the data flow (see ``docs/architecture.md``):

- :mod:`relay.exmail` -- typed async client for the BizMail OpenApi, plus the pure
  ``listen`` payload parser;
- :mod:`relay.emulator` -- an emulator of the Exmail server for tests, benchmarks and the demo;
- the relay pipeline (source, journal, sinks) and its operations surface.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
