"""``exmail-relay emulator``: serve the Exmail emulator alone until Ctrl-C or SIGTERM.

On start it prints one line with the bound URLs (token, API, login, control, and the
second API's base URL ``api2``), so ``--port 0`` can be used and the actual port read
from the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator",
        help="serve the Exmail emulator (the BizMail OpenApi and the second API)",
        description="Serve an emulator of the Exmail BizMail OpenApi server (token, API, "
        "SSO login and the /_emulator/ control API) and of the second API "
        "(api.exmail.qq.com/cgi-bin: gettoken, its operations) on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=12211, help="port to bind, 0 for any (default %(default)s)"
    )
    parser.add_argument("--data", metavar="FILE", help="JSON seed file (default: demo company)")
    parser.add_argument(
        "--hold", type=float, default=25.0, help="listen hold time in seconds (default %(default)s)"
    )
    parser.add_argument(
        "--token-ttl",
        type=int,
        default=7200,
        help="token lifetime in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--action-codes",
        choices=("authority", "v1.4"),
        default="authority",
        help="user/list Action codes: authority 1 Add 2 Edit 3 Del; v1.4 1 DEL 2 ADD 3 MOD",
    )
    parser.add_argument(
        "--redeliver",
        action="store_true",
        help="hand a listen answer's pushes out again to a new token (a restarted client) "
        "until the same token listens again; off by default, as the real server replays nothing",
    )
    parser.add_argument(
        "--companies",
        type=int,
        default=0,
        metavar="N",
        help="add N generated companies admin@tNN.test (key tNN-key, 3 accounts each) "
        "to the seed, for multi-tenant tests",
    )
    parser.add_argument(
        "--listen-log",
        type=int,
        default=1000,
        metavar="N",
        help="finished listens and token fetches kept per company (default %(default)s)",
    )
    parser.add_argument(
        "--token-rotation",
        choices=("reuse_until_expiry", "invalidate_previous"),
        default="reuse_until_expiry",
        help="second API: whether gettoken answers the valid token again "
        "(reuse_until_expiry, default) or replaces it (invalidate_previous)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from relay.cli.errors import CommandError
    from relay.emulator import Emulator, EmulatorSeedError, Seed, demo_seed, load_seed, tenants_seed

    seed = None
    if args.data:
        try:
            seed = load_seed(args.data)
        except EmulatorSeedError as exc:
            raise CommandError(str(exc)) from None
    if args.hold < 0 or args.token_ttl < 1:
        raise CommandError("--hold must be >= 0 and --token-ttl >= 1")
    if args.companies < 0 or args.listen_log < 1:
        raise CommandError("--companies must be >= 0 and --listen-log >= 1")
    if args.companies:
        base = seed or demo_seed()
        seed = Seed(companies=(*base.companies, *tenants_seed(args.companies)), api2=base.api2)
    emulator = Emulator(
        host=args.host,
        port=args.port,
        seed=seed,
        hold=args.hold,
        token_ttl=args.token_ttl,
        action_codes=args.action_codes,
        redeliver=args.redeliver,
        listen_log=args.listen_log,
        token_rotation=args.token_rotation,
    )
    try:
        asyncio.run(_serve(emulator))
    except OSError as exc:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


async def _serve(emulator: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    async with emulator:
        print(
            f"exmail emulator: token {emulator.token_url} api {emulator.api_url} "
            f"login {emulator.login_url} control {emulator.control_url} "
            f"api2 {emulator.api2_url}",
            flush=True,
        )
        await stop.wait()
    print("exmail emulator: stopped", file=sys.stderr, flush=True)
