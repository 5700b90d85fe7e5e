"""Benchmarks for exmail-relay (GitHub issue 7): ``python -m bench --help``.

The harness runs the emulator, the system under test (the relay, or a baseline) and a
RabbitMQ consumer each in its own process on loopback, against the real broker. See
``docs/benchmarks.md`` for the scenarios, the baselines and the targets.

Modules: ``procs`` starts and measures processes; ``consumer``, ``floor``, ``naive`` and
``receiver`` are the programs it starts; ``scenarios`` holds the four workloads;
``__main__`` parses the command line and prints the tables.
"""
