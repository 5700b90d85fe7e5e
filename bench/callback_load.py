"""The callback load generator: ``python -m bench.callback_load SPEC --rate R ... --out F``.

Exmail's side of the ``callbacks`` scenario, in its own process so that its CPU is not
the relay's: it sends signed and AES-encrypted ``Mail`` callbacks (the emulator's own
:func:`relay.emulator._callback.sealed_post`, so the bytes are what the sender sends)
to one tenant's ``/callback/<tenant>`` URL.

Open loop: callback ``i`` is due at ``start + i / rate``, whatever the answers to the
earlier ones; every due callback is sent at once (a late loop sends the overdue ones
back to back), at most ``--in-flight`` at a time. A callback due while that many are
unanswered is not sent and is recorded as failed (``in-flight-limit``): nothing is
dropped silently, and the schedule never waits for the relay. One attempt each, no
retry: a timeout (``--timeout``) or any answer but 200 is a failure.

Each callback carries a distinct MailID (``<run>-<seq>``) and the title
``bench|<seq>|<due wall time>``, which bench/consumer.py keys on. First it sends the GET
URL verification (the "save settings" handshake); a relay that fails it fails the run.

``SPEC`` is a JSON file with the tenant's callback ``url``, ``token``,
``encoding_aes_key`` and ``corpid`` (a file, so no key is on a command line).

The result (JSON at ``--out``): ``start_wall``, ``verified``, and one record per
callback ``[seq, status, error, due_wall, send_lag_s, answer_s]`` (``status`` null on a
timeout, a connection error or the in-flight limit; ``error`` names which).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from relay.core.callback_xml import mail_xml
from relay.emulator._callback import CallbackSender, CallbackTarget, sealed_post

USERS = 100  # distinct recipients (the default of --users)
Record = list[Any]  # [seq, status, error, due_wall, send_lag_s, answer_s]


def mail_id(run: str, seq: int) -> str:
    return f"{run}-{seq}"


def user(seq: int, users: int) -> str:
    return f"u{seq % users}@cb.bench.test"


class Load:
    """One run: the schedule, the requests in flight and their records."""

    def __init__(self, args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
        self.args = args
        self.session = session
        spec = json.loads(args.spec.read_text())
        self.target = CallbackTarget(
            url=spec["url"],
            token=spec["token"],
            encoding_aes_key=spec["encoding_aes_key"],
            corpid=spec["corpid"],
            agentid="1000002",
        )
        self.records: list[Record] = []
        self.in_flight = 0
        self.timeout = aiohttp.ClientTimeout(total=args.timeout)

    def request(self, seq: int, due_wall: float) -> tuple[str, bytes]:
        message = mail_xml(
            corpid=self.target.corpid,
            mail_id=mail_id(self.args.run, seq),
            to_user=user(seq, self.args.users),
            from_user="sender@elsewhere.bench.test",
            title=f"bench|{seq}|{due_wall:.6f}",
            time=int(due_wall),
            new_count=1,
        )
        url, body, _ = sealed_post(
            self.target,
            message,
            timestamp=str(int(due_wall)),
            nonce=str(secrets.randbelow(9_000_000_000) + 1_000_000_000),
            random_prefix=os.urandom(16),
        )
        return url, body

    async def one(self, seq: int, due: float, due_wall: float) -> None:
        loop = asyncio.get_running_loop()
        url, body = self.request(seq, due_wall)
        sent = loop.time()
        status: int | None = None
        error: str | None = None
        try:
            async with self.session.post(
                url,
                data=body,
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=self.timeout,
                allow_redirects=False,
            ) as answer:
                await answer.read()
                status = answer.status
        except TimeoutError:
            error = "timeout"
        except aiohttp.ClientError as exc:
            error = type(exc).__name__
        finally:
            self.in_flight -= 1
        self.records.append([seq, status, error, due_wall, sent - due, loop.time() - sent])

    async def run(self) -> dict[str, Any]:
        verification = await CallbackSender(self.session, timeout=self.args.timeout).verify_url(
            self.target
        )
        if not verification.ok:
            return {"verified": False, "verify_status": verification.status, "records": []}
        loop = asyncio.get_running_loop()
        count = int(self.args.rate * self.args.seconds)
        tasks: list[asyncio.Task[None]] = []
        start, start_wall = loop.time() + 0.05, time.time() + 0.05
        for seq in range(count):
            due = start + seq / self.args.rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due_wall = start_wall + (due - start)
            if self.in_flight >= self.args.in_flight:
                self.records.append([seq, None, "in-flight-limit", due_wall, None, None])
                continue
            self.in_flight += 1
            tasks.append(asyncio.create_task(self.one(seq, due, due_wall)))
        last_due = loop.time()
        await asyncio.gather(*tasks)  # one() catches what a request may raise; a bug surfaces
        return {
            "verified": True,
            "start_wall": start_wall,
            "schedule_s": last_due - start,
            "records": sorted(self.records),
        }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:
        return await Load(args, session).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callback_load")
    parser.add_argument("spec", type=Path, help="JSON: url, token, encoding_aes_key, corpid")
    parser.add_argument("--run", required=True, help="MailIDs are <run>-<seq>")
    parser.add_argument("--rate", type=float, required=True, help="callbacks per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per callback")
    parser.add_argument("--users", type=int, default=USERS, help="distinct recipients")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    args.out.write_text(json.dumps(result))
    return 0 if result["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
