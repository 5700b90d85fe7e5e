"""The api2 tenants' status tallies (relay.runtime.callback_status): pure, no I/O.

The board sits on the observer seam in front of another observer; what it counts for the
status page and what it passes on (to the metrics) are the same reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from relay.core.callback import events_of
from relay.core.callback_xml import MailMessage
from relay.core.events import Event
from relay.ops.listing import TenantQuery, page_status, tenant_rank
from relay.ops.page import tenant_state
from relay.runtime.callback_status import REFUSING_AFTER, CallbackBoard, CallbackTally
from relay.runtime.observer import Observer, TenantObserver
from relay.runtime.status import ListenerStatus, build_status


@dataclass
class Seen(TenantObserver):
    committed_events: list[Event] = field(default_factory=list)

    def committed(self, events: Sequence[Event]) -> None:
        self.committed_events.extend(events)


@dataclass
class Inner(Observer):
    """The observer behind the board (the metrics in production): what reaches it."""

    callbacks: list[tuple[str, str, float]] = field(default_factory=list)
    tenants: dict[str, Seen] = field(default_factory=dict)

    def tenant(self, tenant: str) -> TenantObserver:
        return self.tenants.setdefault(tenant, Seen())

    def callback(self, tenant: str, outcome: str, seconds: float) -> None:
        self.callbacks.append((tenant, outcome, seconds))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def mail_events(tenant: str) -> list[Event]:
    message = MailMessage(
        corpid="ww1",
        to_user="lina@example.com",
        from_user="a@example.com",
        title="Hello",
        mail_id="m-1",
        time=1_800_000_000,
        new_count=1,
    )
    return list(events_of(tenant, message, now=datetime.fromtimestamp(1_800_000_000, UTC)))


def test_the_board_counts_what_it_passes_on() -> None:
    inner, clock = Inner(), Clock()
    board = CallbackBoard(inner, ["newco"], clock=clock)
    for outcome in ["verified", "accepted", "duplicate", "bad-signature", "ignored"]:
        board.callback("newco", outcome, 0.01)
    board.callback("other", "accepted", 0.02)  # not an api2 tenant of the board
    assert [c[:2] for c in inner.callbacks][-1] == ("other", "accepted")
    assert len(inner.callbacks) == 6, "every report reaches the inner observer"
    row = board.tallies["newco"].to_tenant()
    assert row.api == "api2" and row.state == "callback" and row.ver is None
    cb = row.callbacks
    assert cb is not None
    assert (cb.verified, cb.accepted, cb.duplicate, cb.ignored) == (1, 1, 1, 1)
    assert cb.refused == {"bad-signature": 1}
    assert cb.refused_in_a_row == 0, "the ignored (200) answer after it reset the run"
    assert cb.last_refused == "bad-signature" and cb.last_refused_at == 1_800_000_004.0
    assert cb.last_at == cb.last_ok_at == 1_800_000_005.0
    assert row.last_error == "refused: bad-signature" and row.failures == 0
    assert set(board.tallies) == {"newco"}


def test_committed_events_reach_the_tally_and_the_inner_observer() -> None:
    inner = Inner()
    board = CallbackBoard(inner, ["newco"], clock=Clock())
    events = mail_events("newco")
    board.tenant("newco").committed(events)
    board.tenant("acme").committed(events)  # a listener's tenant: passed on only
    assert inner.tenants["newco"].committed_events == events
    assert inner.tenants["acme"].committed_events == events
    tally = board.tallies["newco"]
    assert dict(tally.events_by_type) == {"exmail.mail.new": 1}
    assert tally.last_event_at == 1_800_000_001.0
    assert [r[2] for r in tally.recent] == [events[0].id]


def test_refusals_in_a_row_make_the_tenant_refusing_until_a_200() -> None:
    tally = CallbackTally("newco")
    for n in range(1, REFUSING_AFTER):
        tally.answer("wrong-corpid", float(n))
        assert tally.state == "callback", "a stray refusal or two is not failing"
    tally.answer("stale", 10.0)
    assert tally.state == "refusing"
    row = tally.to_tenant()
    assert row.failures == REFUSING_AFTER and row.last_error == "refused: stale"
    assert row.callbacks is not None and row.callbacks.refused == {"stale": 1, "wrong-corpid": 2}
    assert tenant_state(row) == ("refusing", "refusing callbacks (3 in a row): stale")
    tally.answer("accepted", 11.0)
    assert tally.state == "callback" and tally.refused_in_a_row == 0
    assert tally.to_tenant().last_error == "refused: stale", "the last refusal stays shown"


def test_labels_of_a_served_tenant() -> None:
    tally = CallbackTally("newco")
    assert tenant_state(tally.to_tenant()) == ("callback", "by callback, none yet")
    tally.answer("accepted", 1_800_000_000.0)
    assert tenant_state(tally.to_tenant()) == (
        "callback",
        "by callback, last 2027-01-15 08:00:00 UTC",
    )


def test_a_refusing_api2_tenant_is_listed_failing_first_next_to_failed() -> None:
    listeners = [ListenerStatus(t, state=s) for t, s in [("a", "connected"), ("b", "backoff")]]
    listeners.append(ListenerStatus("c", state="failed"))
    served, refusing = CallbackTally("d"), CallbackTally("e")
    for n in range(REFUSING_AFTER):
        refusing.answer("bad-signature", float(n))
    served.answer("accepted", 1.0)
    served.commit(mail_events("d"), 2.0)
    status = build_status(
        now=10.0, started_at=0.0, stopping=False, listeners=listeners, drainers=(),
        journal=_NoJournal(), stats=None, last_prune=None, descriptions={},
        show_content=False, recent=10, callbacks=[served, refusing],
    )  # fmt: skip
    assert [t.name for t in status.tenants] == ["a", "b", "c", "d", "e"]
    assert [t.api for t in status.tenants] == ["openapi"] * 3 + ["api2"] * 2
    assert [e.tenant for e in status.recent_events] == ["d"], "api2 events are listed"
    paged = page_status(status, TenantQuery())
    assert [t.name for t in paged.tenants] == ["c", "e", "b", "a", "d"]
    assert paged.tenants_page is not None
    assert list(paged.tenants_page.states) == ["failed", "refusing", "backoff", "connected",
                                               "callback"]  # fmt: skip
    assert tenant_rank(status.tenants[3]) == tenant_rank(status.tenants[0])  # both healthy


class _NoJournal:
    """The few journal attributes build_status reads, for a status without one."""

    path = "journal.sqlite3"
    backlog_events = backlog_bytes = 0
    max_events = max_bytes = 1
    retention = 1.0

    def backpressure_reason(self) -> None:
        return None
