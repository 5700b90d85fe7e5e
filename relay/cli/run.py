"""``exmail-relay run [--config FILE]``: the relay service.

Loads the configuration (the edge), configures logging with every configured secret
registered for redaction, takes the journal's single-writer lock (``<journal>.lock``:
:class:`relay.journal.JournalLock`; another relay on the file makes this one exit 1
with one line naming it), opens the components and runs until SIGTERM, SIGINT or
SIGHUP, then shuts down in order and exits 0.

SIGHUP is a stop, not a reload: the configuration is read once, at start. A terminal
that closes, or a supervisor that sends SIGHUP, gets the same orderly drain as SIGTERM
instead of Python's default (the process killed at once, in-flight work dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Iterator

from relay.app.loader import load_settings
from relay.app.settings import Settings
from relay.cli.errors import CommandError
from relay.journal import JournalLock
from relay.ops.logs import configure

log = logging.getLogger("relay.run")

# The end of the one line a second relay on a journal in use exits with (exit code 1).
SECOND_RELAY_ADVICE = "stop it first, or point [journal] path elsewhere"

# Each one stops the relay in order (SIGHUP too: the configuration is not reloaded).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("run", help="run the relay service")
    parser.add_argument("--config", metavar="FILE", help="TOML file (default: $RELAY_CONFIG)")
    parser.set_defaults(handler=run)


def secrets_of(settings: Settings) -> Iterator[str]:
    """Every secret value in the settings, for the log redaction filter."""
    for tenant in settings.tenants:
        if tenant.client_secret is not None:
            yield tenant.client_secret.get_secret_value()
        yield from tenant.api2_secret_values()
    yield settings.amqp.url.get_secret_value()
    for hook in settings.webhooks:
        for secret in hook.secret:
            yield secret.get_secret_value()
    if settings.http.basic_password is not None:
        yield settings.http.basic_password.get_secret_value()
    for tokens in (settings.http.tokens("auth_token"), settings.http.tokens("admin_token")):
        if tokens is not None:  # every token of a rotation file
            yield from tokens.values()
    for client in settings.clients:
        for key in client.key:
            yield key.get_secret_value()
        if client.link_secret is not None:
            yield client.link_secret.get_secret_value()
    for secret in settings.sharding.secret:
        yield secret.get_secret_value()


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure(
        format=settings.log.format, level=settings.log.level, secrets=list(secrets_of(settings))
    )
    # Before the journal opens (it migrates and retires orphans) and until the process
    # ends: a second relay on the file exits here, naming the first (JournalInUse).
    with JournalLock(settings.journal.path, command="run", advice=SECOND_RELAY_ADVICE):
        try:
            asyncio.run(serve(settings))
        except OSError as exc:  # a port in use, an unwritable path: say which, no traceback
            raise CommandError(exc.strerror or str(exc)) from None
    return 0


async def serve(settings: Settings) -> None:
    from relay.app.wiring import build_service  # heavy imports only when serving
    from relay.runtime.heap import freeze_after_start

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop_on(signum: signal.Signals) -> None:
        log.info("signal received, stopping", extra={"signal": signum.name})
        stop.set()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop_on, signum)
    try:
        async with build_service(settings) as running:
            if running.server is not None:
                log.info("serving health and status", extra={"url": running.server.url})
            async with asyncio.TaskGroup() as group:
                freezer = group.create_task(
                    freeze_after_start(running.service.listeners), name="heap-freeze"
                )
                try:
                    await running.service.run(stop)
                finally:
                    freezer.cancel()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
