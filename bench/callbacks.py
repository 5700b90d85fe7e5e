"""The ``callbacks`` scenario (issue 21): the second API's callback path under load.

One relay (``exmail-relay run``: one ``api = "api2"`` tenant, ``[http]`` on a free
loopback port, the AMQP sink on the run's exchange, a fresh journal) receives signed and
encrypted ``Mail`` callbacks from :mod:`bench.callback_load`, a separate process that
offers a fixed rate (open loop, 500/s for 20 s by default) and records each answer's
status and time. The relay answers 200 only after the journal commit, so every callback
answered 200 must then reach the run's RabbitMQ consumer (:mod:`bench.consumer`)
exactly once, with the MailID sent and the event id the relay derives for it.

Reported: callbacks offered and sent, answered 200, failed (by reason: a status, a
timeout, the generator's in-flight limit), delivered, duplicates, missing, wrong ids,
the rates achieved, the answer times (p50/p90/p99/max, from the send; and p99 from the
time each was due, which counts any lag of the generator), delivery p99 (due time to
the consumer) and the relay's CPU per callback answered 200 (from the first callback to
the last delivery, ``/proc``). Any failure, missing or duplicate fails the run.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import string
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import requests

from bench import procs
from bench.callback_load import USERS, mail_id, user
from bench.procs import BenchError, Proc
from relay.core.events import MAIL_NEW, derive_id

TENANT = "cb"
ANSWER_TIMEOUT = 5.0  # the sender's default (WeCom's 5 s)


class Sizes(Protocol):
    @property
    def cb_rate(self) -> float: ...
    @property
    def cb_seconds(self) -> float: ...
    @property
    def cb_in_flight(self) -> int: ...


def _toml(value: Any) -> str:
    return json.dumps(value)


def relay_config(workdir: Path, port: int, exchange: str, secrets_: dict[str, str]) -> Path:
    lines = [
        "[journal]",
        f"path = {_toml(str(workdir / 'journal.sqlite3'))}",
        "[http]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "[log]",
        'level = "warning"',
        'format = "json"',
        "[sharding]",
        'mode = "static"',
        "[amqp]",
        "enabled = true",
        f"url = {_toml(procs.AMQP_URL)}",
        f"exchange = {_toml(exchange)}",
        "declare_queue = false",  # the consumer declares and binds its queue
        "[[tenants]]",
        f"name = {_toml(TENANT)}",
        'api = "api2"',
        f"corpid = {_toml(secrets_['corpid'])}",
        f"callback_token = {_toml(secrets_['token'])}",
        f"encoding_aes_key = {_toml(secrets_['encoding_aes_key'])}",
    ]
    path = workdir / "relay.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait_ready(base: str, relay: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        relay.check()
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"the relay was not ready within {timeout}s")


def _sample_while(proc: Proc, pid: int, timeout: float) -> list[tuple[float, float]]:
    """(wall time, CPU seconds of ``pid``) every 50 ms while ``proc`` runs."""
    samples = []
    deadline = time.monotonic() + timeout
    while proc.popen.poll() is None and time.monotonic() < deadline:
        samples.append((time.time(), procs.cpu_seconds(pid)))
        time.sleep(0.05)
    samples.append((time.time(), procs.cpu_seconds(pid)))
    return samples


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(target: str, sizes: Sizes) -> dict[str, Any]:
    assert target == "relay"
    rate, seconds = sizes.cb_rate, sizes.cb_seconds
    count = int(rate * seconds)
    run_id = secrets.token_hex(4)
    alnum = string.ascii_letters + string.digits
    keys = {
        "corpid": f"wwbench{run_id}",
        "token": secrets.token_hex(16),
        "encoding_aes_key": "".join(secrets.choice(alnum) for _ in range(43)),
    }
    workdir = procs.workdir()
    exchange, queue = procs.names(run_id)
    expect_file = workdir / "answered.json"
    started: list[Proc] = []
    ok = False
    try:
        consumer = procs.start_consumer(
            workdir, exchange, queue, count, seconds + 180,
            ["--expect-file", str(expect_file), "--grace", "2", "--ids"],
        )  # fmt: skip
        started.append(consumer)
        port = procs.free_port()
        relay = procs.start_relay(relay_config(workdir, port, exchange, keys), workdir)
        started.append(relay)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, relay)
        spec = workdir / "load.json"
        spec.write_text(json.dumps({**keys, "url": f"{base}/callback/{TENANT}"}))
        out = workdir / "load-result.json"
        cpu0, wait0 = procs.cpu_seconds(relay.pid), procs.runqueue_wait_s(relay.pid)
        argv = [procs.PYTHON, "-m", "bench.callback_load", str(spec), "--run", run_id]
        argv += ["--rate", str(rate), "--seconds", str(seconds), "--out", str(out)]
        argv += ["--in-flight", str(sizes.cb_in_flight), "--timeout", str(ANSWER_TIMEOUT)]
        load = procs.start("load", argv, workdir)
        started.append(load)
        samples = _sample_while(load, relay.pid, seconds + ANSWER_TIMEOUT + 60)
        load_s = samples[-1][0] - samples[0][0]
        load_cpu = samples[-1][1] - cpu0
        load_wait = procs.runqueue_wait_s(relay.pid) - wait0
        if load.stop() != 0 or not out.exists():
            tail = load.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"the load generator failed (verification or crash):\n{tail}")
        sent = json.loads(out.read_text())
        answered = [r[0] for r in sent["records"] if r[1] == 200]
        partial = expect_file.with_suffix(".tmp")
        partial.write_text(json.dumps(answered))
        partial.rename(expect_file)  # the consumer never reads half a list
        samples += _sample_while(consumer, relay.pid, 240)
        got = procs.consumer_result(consumer, workdir, 30)
        relay.check()
        row = figures(run_id, count, rate, sent, got, samples, cpu0, procs.rss_kb(relay.pid))
        # While the generator ran: the share of a core the relay used, and the time its
        # threads were runnable but not scheduled (the machine's other work).
        row["relay_cpu_share_during_load"] = round(load_cpu / load_s, 3)
        row["relay_runqueue_wait_s_during_load"] = round(load_wait, 2)
        ok = row.get("status") != "failed"  # a failed run keeps its logs
    finally:
        for p in reversed(started):
            p.stop()
        with contextlib.suppress(Exception):
            procs.delete_amqp(exchange, queue)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"  (logs of the failed run kept in {workdir})")
    return row


def figures(
    run_id: str,
    count: int,
    rate: float,
    sent: dict[str, Any],
    got: dict[str, Any],
    samples: list[tuple[float, float]],
    cpu0: float,
    rss: int,
) -> dict[str, Any]:
    records = sent["records"]
    reasons = Counter(str(r[1]) if r[1] is not None else str(r[2]) for r in records if r[1] != 200)
    answered = {r[0] for r in records if r[1] == 200}
    tried = [r for r in records if r[4] is not None]
    sends = [r[3] + r[4] for r in tried]
    answers = [r[5] * 1000 for r in tried]
    from_due = [(r[4] + r[5]) * 1000 for r in tried]
    delivered = {seq: received for seq, _due, received in got["records"]}
    ids = {seq: (event_id, mail) for seq, event_id, mail in got.get("ids", [])}
    wrong = sum(  # a delivery without the MailID sent or the id the relay derives for it
        1
        for seq in delivered
        if ids.get(seq)
        != (
            derive_id(MAIL_NEW, TENANT, user(seq, USERS), mail_id(run_id, seq)),
            mail_id(run_id, seq),
        )
    )
    missing = len(answered - delivered.keys())
    last_answer = max((r[3] + r[4] + r[5] for r in tried), default=0.0)
    last = max(delivered.values(), default=last_answer)
    cpu = next((c for w, c in samples if w >= last), samples[-1][1]) - cpu0
    span = (max(sends) - min(sends)) if len(sends) > 1 else 0.0
    due = {r[0]: r[3] for r in records}
    row: dict[str, Any] = {
        "offered_rate": rate,
        "callbacks": count,
        "sent": len(tried),
        "answered_200": len(answered),
        "failed": count - len(answered),
        "failures": dict(reasons),
        "delivered": len(answered & delivered.keys()),
        "delivered_not_200": len(delivered.keys() - answered),  # committed, answer lost
        "duplicates": int(got["duplicates"]),
        "missing": missing,
        "lost": missing,
        "wrong_ids": wrong,
        "sent_per_s": round((len(sends) - 1) / span, 1) if span else None,
        "answered_200_per_s": round(len(answered) / max(last_answer - sent["start_wall"], 1e-9), 1),
        "answer_p50_ms": round(pct(answers, 0.50), 2),
        "answer_p90_ms": round(pct(answers, 0.90), 2),
        "answer_p99_ms": round(pct(answers, 0.99), 2),
        "answer_max_ms": round(max(answers, default=float("nan")), 2),
        "from_due_p99_ms": round(pct(from_due, 0.99), 2),
        "send_lag_max_ms": round(max((r[4] * 1000 for r in tried), default=0.0), 2),
        "delivery_p99_ms": round(
            pct([(r - due[s]) * 1000 for s, r in delivered.items() if s in due], 0.99), 2
        ),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_callback": round(cpu / max(len(answered), 1) * 1e6, 1),
        "rss_kb_after": rss,
    }
    problems = [
        f"{name} {row[name]}"
        for name in ("failed", "missing", "duplicates", "wrong_ids")
        if row[name]
    ]
    if problems:
        row["status"] = "failed"
        row["error"] = "callbacks: " + ", ".join(problems) + f" (failures: {dict(reasons)})"
    return row
