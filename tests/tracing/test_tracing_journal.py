"""The trace context in the journal (schema 4) and the no-op seam.

Each event's W3C context is stored in two columns and written into its CloudEvent; a
journal of schema 3 gains the columns in place, and its rows (no context) still deliver.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from relay.core import events
from relay.core.delivery import Delivered, Delivery, Outcome
from relay.journal import Journal
from relay.journal._schema import SCHEMA_VERSION
from relay.runtime.tracing import NO_SPAN, NO_TRACE, Tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
STATE = "vendor=opaque"
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def mail(n: int) -> events.Event:
    return events.mail_new(
        tenant="acme",
        user="bob@acme.test",
        mail_id=f"m{n}",
        sender="a@b.test",
        receiver="bob@acme.test",
        subject="hello",
        summary="",
        unread=n,
        now=NOW,
    )


def to(*sinks: str):  # type: ignore[no-untyped-def]
    return lambda event: sinks


def columns(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {row[1] for row in db.execute("PRAGMA table_info(events)")}


async def test_traced_events_carry_their_context_in_the_row_and_the_cloudevent(
    tmp_path: Path,
) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.append("acme", [mail(1)], route=to("s"))
        await journal.append("acme", [mail(2)], route=to("s"), traceparent=PARENT, tracestate=STATE)
        untraced, traced = await journal.claim("s", limit=10)
    assert (untraced.traceparent, untraced.tracestate) == (None, None)
    assert "traceparent" not in json.loads(untraced.body)
    assert untraced.body == mail(1).encode()
    assert (traced.traceparent, traced.tracestate) == (PARENT, STATE)
    document = json.loads(traced.body)
    assert (document["traceparent"], document["tracestate"]) == (PARENT, STATE)
    assert {k: v for k, v in document.items() if not k.startswith("trace")} == json.loads(
        mail(2).encode()
    )


async def test_a_schema_3_journal_gains_the_columns_and_its_rows_still_deliver(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.append("acme", [mail(1)], route=to("s"))
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # what schema 3 left behind
        db.execute("ALTER TABLE events DROP COLUMN traceparent")
        db.execute("ALTER TABLE events DROP COLUMN tracestate")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    assert "traceparent" not in columns(path)

    async with Journal(path) as journal:
        await journal.append("acme", [mail(2)], route=to("s"), traceparent=PARENT)
        old, new = await journal.claim("s", limit=10)
    assert {"traceparent", "tracestate"} <= columns(path)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
            SCHEMA_VERSION,
        )
    assert (old.event_id, old.traceparent) == (mail(1).id, None)
    assert (new.event_id, new.traceparent, new.tracestate) == (mail(2).id, PARENT, None)
    assert "tracestate" not in json.loads(new.body)  # none given: the attribute is absent

    class Recorder:
        name = "s"
        connected = True
        sent: list[Delivery] = []  # noqa: RUF012 -- one test's recorder

        async def send(self, delivery: Delivery) -> Outcome:
            self.sent.append(delivery)
            return Delivered()

    sink = Recorder()
    send = Tracing().sender(sink)
    assert send == sink.send  # the no-op seam: the drainer calls sink.send itself
    assert await send(old) == Delivered()
    assert sink.sent == [old]


def test_the_no_op_seam_hands_out_shared_objects() -> None:
    """Tracing off allocates nothing per answer or commit: the same objects every time."""
    tracing = Tracing()
    assert tracing.enabled is False
    with tracing.answer("acme", 0, 1, 1) as trace:
        assert trace is NO_TRACE
        assert (trace.traceparent, trace.tracestate) == (None, None)
        with trace.commit(1) as span:
            assert span is NO_SPAN
            span.inserted(1)
