"""``exmail-relay demo``: the emulator, a relay, a console sink and generated traffic."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from relay.cli.errors import EXIT_USAGE, CommandError
from relay.ops.logs import configure


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "demo", help="run an emulator, a relay and generated mail traffic (Ctrl-C stops)"
    )
    parser.add_argument("--port", type=int, default=8080, help="status page port (default 8080)")
    parser.add_argument(
        "--amqp-url", help="also publish to RabbitMQ, e.g. amqp://guest:guest@127.0.0.1:5672/"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="mean seconds between generated mails"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port} is not a TCP port", exit_code=EXIT_USAGE)
    if args.interval <= 0:
        raise CommandError("--interval must be positive", exit_code=EXIT_USAGE)
    if args.amqp_url is not None and not args.amqp_url.startswith(("amqp://", "amqps://")):
        raise CommandError("--amqp-url must start with amqp:// or amqps://", exit_code=EXIT_USAGE)
    configure(format="text" if sys.stderr.isatty() else "json", level="info")
    try:
        asyncio.run(_main(args))
    except OSError as exc:
        raise CommandError(f"cannot start the demo: {exc.strerror or exc}") from None
    return 0


async def _main(args: argparse.Namespace) -> None:
    from relay.app.demo import run_demo

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await run_demo(
        port=args.port,
        amqp_url=args.amqp_url,
        interval=args.interval,
        stop=stop,
        announce=lambda line: print(line, file=sys.stderr, flush=True),
    )
