"""``relay.app``: configuration and assembly, the edge where settings become components.

- :mod:`relay.app.settings`: the configuration's models (pure);
- :mod:`relay.app.loader`: reads the TOML file, the environment and secret files;
- :mod:`relay.app.wiring`: the one composition root, building a running relay;
- :mod:`relay.app.demo`: the demo (emulator, relay, console sink, traffic) in one process.
"""
