"""The webhook sink against a real loopback receiver, driven by real drainers and journal."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from standardwebhooks.webhooks import Webhook

from relay import __version__
from relay.cli import main as cli_main
from relay.core.events import directory_changed, user_changed
from relay.runtime.drainer import IDLE_POLL
from tests.support import eventually
from tests.webhook.conftest import Answer, Harness, Receiver, hook, mail, make_secret, settled

# Scheduling slack above a computed due time, for a loaded machine. Still well under
# IDLE_POLL: a retry that waited for the idle poll instead of its due time is caught.
MARGIN = 1.0
assert MARGIN < IDLE_POLL


async def test_delivered_requests_verify_with_each_rotated_secret(
    receiver: Receiver, journal_path: Path
) -> None:
    old, new = make_secret(), make_secret()
    async with Harness(journal_path, [hook(receiver, "rot", secret=[old, new])]) as h:
        evs = [mail(), mail()]
        await h.append(*evs)
        got = await receiver.wait_for("rot", 2)
        await settled(h.journal, "webhook:rot")
    assert {r.headers["webhook-id"] for r in got} == {e.id for e in evs}
    for request, event in zip(
        sorted(got, key=lambda r: r.headers["webhook-id"]),
        sorted(evs, key=lambda e: e.id),
        strict=True,
    ):
        assert request.body == event.encode()  # the journaled bytes, unchanged
        # CloudEvents HTTP binding, structured mode: what tells an SDK the body is an event
        assert request.headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
        assert request.headers["User-Agent"] == f"exmail-relay/{__version__}"
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        for secret in (old, new):
            payload = Webhook(secret).verify(request.body, request.headers)
            assert payload["id"] == event.id
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10
    assert h.sample("exmail_relay_webhook_attempts_total", sink="webhook:rot", outcome="2xx") == 2


async def test_two_failures_then_success_follow_the_jittered_schedule(
    receiver: Receiver, journal_path: Path
) -> None:
    receiver.script("flaky", Answer(500), Answer(502))
    settings = hook(receiver, "flaky", retry_schedule=[0.2, 0.4], jitter=0.2)
    async with Harness(journal_path, [settings]) as h:
        event = mail()
        await h.append(event)
        await receiver.wait_for("flaky", 1)
    attempts = receiver.to("flaky")
    assert [r.status for r in attempts] == [500, 502, 200]
    assert {r.headers["webhook-id"] for r in attempts} == {event.id}
    gap1 = attempts[1].at - attempts[0].at
    gap2 = attempts[2].at - attempts[1].at
    assert 0.2 * 0.8 <= gap1 <= 0.2 * 1.2 + MARGIN
    assert 0.4 * 0.8 <= gap2 <= 0.4 * 1.2 + MARGIN
    stamps = [int(r.headers["webhook-timestamp"]) for r in attempts]
    assert stamps == sorted(stamps)
    assert h.sample("exmail_relay_webhook_attempts_total", sink="webhook:flaky", outcome="5xx") == 2


async def test_retry_after_is_honoured_and_capped_by_the_schedule(
    receiver: Receiver, journal_path: Path
) -> None:
    receiver.script("slow", Answer(429, {"Retry-After": "1"}))
    receiver.script("capped", Answer(503, {"Retry-After": "3600"}))
    hooks = [
        hook(receiver, "slow", retry_schedule=[0.1, 5.0], jitter=0.0),
        hook(receiver, "capped", retry_schedule=[0.1, 0.3], jitter=0.0),
    ]
    async with Harness(journal_path, hooks) as h:
        await h.append(mail())
        await receiver.wait_for("slow", 1)
        await receiver.wait_for("capped", 1)
    slow, capped = receiver.to("slow"), receiver.to("capped")
    assert [r.status for r in slow] == [429, 200]
    assert slow[1].at - slow[0].at >= 0.99
    assert [r.status for r in capped] == [503, 200]
    assert 0.29 <= capped[1].at - capped[0].at <= 0.3 + MARGIN  # max(schedule), not an hour


async def test_410_disables_until_endpoint_enable(receiver: Receiver, journal_path: Path) -> None:
    receiver.script("gone", Answer(410, body=b"endpoint removed"))
    async with Harness(journal_path, [hook(receiver, "gone")]) as h:
        event = mail()
        await h.append(event)
        await receiver.wait_for("gone", 1, status=410)
        reason = await eventually(
            lambda: h.journal.disabled("webhook:gone"), what="the endpoint disabled"
        )
        assert "410" in reason
        assert h.drainers[0].disabled_reason is not None
        # Recorded as disabled, not as a retry: the row waits with no due time, and
        # nothing else was sent.
        [row] = await h.journal.claim("webhook:gone", limit=10, due_only=False)
        assert (row.event_id, row.attempts, row.next_at) == (event.id, 1, 0.0)
        assert len(receiver.to("gone")) == 1
        assert h.sample("exmail_relay_sink_disabled", sink="webhook:gone") == 1
        code = await asyncio.to_thread(
            cli_main, ["endpoint", "enable", "gone", "--journal", str(journal_path)]
        )
        assert code == 0
        got = await receiver.wait_for("gone", 1, within=8)
        assert got[0].headers["webhook-id"] == event.id
        assert await h.journal.disabled("webhook:gone") is None
        assert h.sample("exmail_relay_sink_disabled", sink="webhook:gone") == 0


async def test_exhausted_events_become_dead_letters_and_replay_delivers(
    receiver: Receiver, journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.script("dead", default=Answer(500, body=b"boom"))
    async with Harness(journal_path, [hook(receiver, "dead", retry_schedule=[0.05, 0.05])]) as h:
        event = mail()
        await h.append(event)
        await receiver.wait_for("dead", 3, status=500)
        await eventually(lambda: h.journal.dead_letters("webhook:dead"), what="a dead letter")
        await settled(h.journal, "webhook:dead")  # dead: no attempt is still to come
        assert len(receiver.to("dead")) == 3  # 1 + len(schedule), then it stops
        argv = ["deadletters", "list", "--json", "--journal", str(journal_path)]
        assert await asyncio.to_thread(cli_main, argv) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(d["endpoint"], d["event_id"], d["attempts"]) for d in listed] == [
            ("dead", event.id, 3)
        ]
        assert listed[0]["last_error"] == "HTTP 500: boom"
        assert h.sample("exmail_relay_dead_letters_total", sink="webhook:dead") == 1

        receiver.script("dead", default=Answer(200))
        argv = ["deadletters", "replay", "--endpoint", "dead", "--journal", str(journal_path)]
        assert await asyncio.to_thread(cli_main, argv) == 0
        # Another process revived the row: only the drainer's idle poll can find it.
        got = await receiver.wait_for("dead", 1, within=IDLE_POLL + 10)
        assert got[0].headers["webhook-id"] == event.id
        assert await h.journal.dead_letters("webhook:dead") == []


async def test_hanging_endpoint_does_not_slow_a_healthy_one(
    receiver: Receiver, journal_path: Path
) -> None:
    receiver.script("hang", default=Answer(hang=True))
    hooks = [hook(receiver, "hang", timeout=5), hook(receiver, "fast")]
    async with Harness(journal_path, hooks) as h:
        await h.append(mail())
        await eventually(lambda: receiver.hanging, what="the first request to hang")
        for count in range(2, 8):
            await h.append(mail())
            await receiver.wait_for("fast", count)
        # Seven deliveries to the healthy endpoint, and the first attempt at the hanging
        # one, which started before them, has not ended yet (no timeout counted, still
        # in flight, nothing answered): none of the healthy deliveries waited for it.
        timeouts = h.sample(
            "exmail_relay_webhook_attempts_total", sink="webhook:hang", outcome="timeout"
        )
        assert timeouts == 0
        assert h.drainers[0].in_flight >= 1
        assert receiver.to("hang") == []


async def test_restart_mid_schedule_resumes_without_loss_or_repeats(
    receiver: Receiver, journal_path: Path
) -> None:
    receiver.script("resume", Answer(200), Answer(500))
    settings = hook(receiver, "resume", retry_schedule=[0.5], jitter=0.0, ordered=True)
    first, second = mail(), mail()
    async with Harness(journal_path, [settings]) as h:
        await h.append(first, second)
        await receiver.wait_for("resume", 1, status=500)

        async def attempted() -> list[tuple[str, int]]:
            rows = await h.journal.claim("webhook:resume", limit=10, due_only=False)
            return [(p.event_id, p.attempts) for p in rows if p.attempts]

        assert await eventually(attempted, what="the failure recorded") == [(second.id, 1)]
    async with Harness(journal_path, [settings]) as h:
        await receiver.wait_for("resume", 2)
        await settled(h.journal, "webhook:resume")
    delivered = [r.headers["webhook-id"] for r in receiver.to("resume") if r.status == 200]
    assert delivered == [first.id, second.id]  # each once, in order
    failed = [r for r in receiver.to("resume") if r.status == 500]
    assert receiver.to("resume")[-1].at - failed[0].at >= 0.5


async def test_type_and_tenant_filters_route(receiver: Receiver, journal_path: Path) -> None:
    hooks = [
        hook(receiver, "mail", types=["exmail.mail.*"], tenants=["acme"]),
        hook(receiver, "users", types=["exmail.user.added"]),
        hook(receiver, "all"),
    ]
    acme_mail, beta_mail = mail("acme"), mail("beta")
    added = user_changed(
        tenant="beta", alias="x@b.test", change="added", ver=2, profile={}, now=acme_mail.time
    )
    changed = directory_changed(tenant="acme", old_ver=1, new_ver=2, count=1, now=acme_mail.time)
    async with Harness(journal_path, hooks) as h:
        await h.append(acme_mail, changed, tenant="acme")
        await h.append(beta_mail, added, tenant="beta")
        await receiver.wait_for("all", 4)
        await receiver.wait_for("users", 1)
        await receiver.wait_for("mail", 1)
        await settled(h.journal, "webhook:all", "webhook:users", "webhook:mail")

    def ids(path: str) -> set[str]:
        return {r.headers["webhook-id"] for r in receiver.to(path)}

    assert ids("mail") == {acme_mail.id}
    assert ids("users") == {added.id}
    assert ids("all") == {acme_mail.id, beta_mail.id, added.id, changed.id}


async def test_redirects_are_not_followed(receiver: Receiver, journal_path: Path) -> None:
    receiver.script("moved", Answer(302, {"Location": receiver.url("elsewhere")}))
    async with Harness(journal_path, [hook(receiver, "moved", retry_schedule=[])]) as h:
        await h.append(mail())
        await receiver.wait_for("moved", 1, status=302)
        dead = await eventually(
            lambda: h.journal.dead_letters("webhook:moved"), what="a dead letter"
        )
    assert receiver.to("elsewhere") == []
    assert dead[0].last_error is not None
    assert dead[0].last_error.startswith("HTTP 302 (redirects are not followed)")
    assert h.sample("exmail_relay_webhook_attempts_total", sink="webhook:moved", outcome="3xx") == 1


async def test_no_secret_or_url_query_leaks(
    receiver: Receiver, journal_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = make_secret()
    echo = b"you sent {signature} " + b"x" * 10_000
    receiver.script("leak", default=Answer(400, body=echo))
    url = receiver.url("leak").replace("http://", "http://user:pa55word@") + "?token=T0KEN"
    settings = hook(receiver, "leak", url=url, secret=[secret], retry_schedule=[])
    caplog.set_level("DEBUG")
    async with Harness(journal_path, [settings]) as h:
        await h.append(mail())
        got = await receiver.wait_for("leak", 1, status=400)
        dead = await eventually(
            lambda: h.journal.dead_letters("webhook:leak"), what="a dead letter"
        )
        description = h.descriptions["webhook:leak"]
    signature = got[0].headers["webhook-signature"].removeprefix("v1,")
    error = dead[0].last_error or ""
    assert error.startswith("HTTP 400: you sent v1,*** x")
    assert len(error) < 600
    exported = generate_latest(h.metrics.registry).decode()
    ours = [str(vars(r)) for r in caplog.records if r.name.startswith("relay")]
    assert ours  # the relay did log (endpoint ready, dead letter)
    texts = [error, *ours, exported, json.dumps(asdict(description))]
    for text in texts:
        for secret_part in (signature, secret, secret.removeprefix("whsec_"), "T0KEN", "pa55word"):
            assert secret_part not in text
    assert description.target == receiver.url("leak")


async def test_connection_refused_is_retried_as_a_connection_outcome(
    receiver: Receiver, journal_path: Path
) -> None:
    settings = hook(receiver, "nowhere", url="http://127.0.0.1:9/x", retry_schedule=[0.05])
    async with Harness(journal_path, [settings]) as h:
        await h.append(mail())
        dead = await eventually(
            lambda: h.journal.dead_letters("webhook:nowhere"), what="a dead letter"
        )
    assert dead[0].attempts == 2
    assert (dead[0].last_error or "").startswith("connection failed")
    assert (
        h.sample(
            "exmail_relay_webhook_attempts_total", sink="webhook:nowhere", outcome="connection"
        )
        == 2
    )
