"""The listen log: who held a ``listen`` for which company, when, and how it ended.

What the high-availability tests measure against. Several relay replicas listen on one
emulator; the log answers, per company (keyed by administrator account):

- every listen, with its start and end on the server's monotonic clock (and wall time),
  the replica that sent it (its ``X-Relay-Replica`` header, else the peer address), the
  *generation* of the token it used (1 for the company's first token, 2 for the next;
  never the token) and how it ended (:data:`Outcome`);
- the **overlaps**: times when two listens of one company were open at once from
  different replicas or under different tokens;
- the **gaps**: times when no listen of the company was open (a takeover's gap);
- the **token fetches**: how many, when, and by which replica;
- the **calls**: every OpenApi request made with a token issued to the company (valid
  or not: a call under a superseded token is still a call that left its replica), with
  its operation and replica, so a test can prove a replica sent nothing for a tenant.

No I/O: the server calls :meth:`ListenLog.opened` / :meth:`ListenLog.closed` /
:meth:`ListenLog.token_issued`, and time comes from injectable clocks. Memory is
bounded: each company keeps its last ``size`` finished listens and token fetches (a ring
buffer); open listens are held apart until they end. Gaps are only known after the
*horizon*, the latest end among the listens the buffer has dropped, so a window that
starts earlier is cut there (and the gap says it was ``clipped``).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import _intervals

__all__ = ["Call", "Gap", "Listen", "ListenLog", "Outcome", "Overlap", "TokenFetch"]

Outcome = Literal["data", "keepalive", "token_rejected", "client_gone", "error"]
"""How a listen ended: answered with pushes or a version update (``data``), answered
``{"Ret":0}`` at its deadline or at shutdown (``keepalive``), answered 1200 because its
token was superseded while it was held (``token_rejected``), the client closed the
connection first (``client_gone``), or the handler failed (``error``)."""


@dataclass(frozen=True, slots=True)
class Listen:
    id: int
    company: str
    replica: str
    peer: str
    token: int
    start: float
    start_wall: float
    end: float | None = None
    end_wall: float | None = None
    outcome: Outcome | None = None

    @property
    def open(self) -> bool:
        return self.end is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "company": self.company,
            "replica": self.replica,
            "peer": self.peer,
            "token": self.token,
            "start": self.start,
            "start_wall": self.start_wall,
            "end": self.end,
            "end_wall": self.end_wall,
            "seconds": None if self.end is None else self.end - self.start,
            "outcome": self.outcome,
        }


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two listens of one company open at once, from ``start`` to ``end`` (``open``:
    both still held, ``end`` is now)."""

    company: str
    first: Listen
    second: Listen
    start: float
    end: float
    open: bool

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "listens": [self.first.id, self.second.id],
            "replicas": [self.first.replica, self.second.replica],
            "tokens": [self.first.token, self.second.token],
            "start": self.start,
            "end": self.end,
            "seconds": self.seconds,
            "open": self.open,
        }


@dataclass(frozen=True, slots=True)
class Gap:
    """A time with no listen of ``company`` open. ``open``: still none now (``end`` is
    now); ``clipped``: it began before the window asked for (or before the horizon)."""

    company: str
    start: float
    end: float
    open: bool
    clipped: bool

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "start": self.start,
            "end": self.end,
            "seconds": self.seconds,
            "open": self.open,
            "clipped": self.clipped,
        }


@dataclass(frozen=True, slots=True)
class TokenFetch:
    company: str
    generation: int
    at: float
    wall: float
    replica: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "generation": self.generation,
            "at": self.at,
            "wall": self.wall,
            "replica": self.replica,
        }


@dataclass(frozen=True, slots=True)
class Call:
    """One OpenApi request that reached the server with a token of ``company``."""

    company: str
    operation: str
    replica: str
    at: float
    wall: float

    def to_json(self) -> dict[str, Any]:
        return {
            "company": self.company,
            "operation": self.operation,
            "replica": self.replica,
            "at": self.at,
            "wall": self.wall,
        }


@dataclass(slots=True)
class _Tenant:
    listens: deque[Listen]
    fetches: deque[TokenFetch]
    calls: deque[Call]
    fetch_count: int = 0
    horizon: float = float("-inf")
    open_ids: set[int] = field(default_factory=set)


class ListenLog:
    """Listens and token fetches per company, bounded by ``size`` per company."""

    def __init__(
        self,
        *,
        size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.clock = clock
        self.wall = wall
        self._ids = itertools.count(1)
        self._tenants: dict[str, _Tenant] = {}
        self._open: dict[int, Listen] = {}
        self.started = clock()

    def __repr__(self) -> str:
        return f"<ListenLog companies={len(self._tenants)} open={len(self._open)}>"

    def _tenant(self, company: str) -> _Tenant:
        tenant = self._tenants.get(company)
        if tenant is None:
            tenant = _Tenant(
                deque(maxlen=self.size), deque(maxlen=self.size), deque(maxlen=self.size)
            )
            self._tenants[company] = tenant
        return tenant

    # -- recording -------------------------------------------------------------------------

    def opened(self, company: str, *, replica: str, peer: str, token: int) -> int:
        """A listen of ``company`` starts now; the id to pass to :meth:`closed`."""
        listen = Listen(next(self._ids), company, replica, peer, token, self.clock(), self.wall())
        self._open[listen.id] = listen
        self._tenant(company).open_ids.add(listen.id)
        return listen.id

    def closed(self, listen_id: int, outcome: Outcome) -> None:
        """The listen ``listen_id`` ends now (unknown ids are ignored: cleared meanwhile)."""
        listen = self._open.pop(listen_id, None)
        if listen is None:
            return
        done = replace(listen, end=self.clock(), end_wall=self.wall(), outcome=outcome)
        tenant = self._tenant(listen.company)
        tenant.open_ids.discard(listen_id)
        if len(tenant.listens) == tenant.listens.maxlen:
            dropped = tenant.listens[0]
            assert dropped.end is not None  # only finished listens are buffered
            tenant.horizon = max(tenant.horizon, dropped.end)
        tenant.listens.append(done)

    def token_issued(self, company: str, generation: int, *, replica: str = "") -> None:
        tenant = self._tenant(company)
        tenant.fetch_count += 1
        fetch = TokenFetch(company, generation, self.clock(), self.wall(), replica)
        tenant.fetches.append(fetch)

    def called(self, company: str, operation: str, *, replica: str) -> None:
        """An OpenApi request with a token of ``company`` arrived now."""
        call = Call(company, operation, replica, self.clock(), self.wall())
        self._tenant(company).calls.append(call)

    def clear(self) -> None:
        """Forget finished listens and token fetches (open listens stay: they are open)."""
        self._tenants.clear()
        for listen in self._open.values():
            self._tenant(listen.company).open_ids.add(listen.id)
        self.started = self.clock()

    # -- reading ---------------------------------------------------------------------------

    def companies(self) -> list[str]:
        return list(self._tenants)

    def open_count(self, company: str | None = None) -> int:
        if company is None:
            return len(self._open)
        tenant = self._tenants.get(company)
        return 0 if tenant is None else len(tenant.open_ids)

    def token_fetch_count(self, company: str) -> int:
        """Tokens issued to ``company`` since the start (or the last clear), all counted."""
        tenant = self._tenants.get(company)
        return 0 if tenant is None else tenant.fetch_count

    def _names(self, company: str | None) -> list[str]:
        return list(self._tenants) if company is None else [company]

    def _listens_of(self, company: str) -> list[Listen]:
        tenant = self._tenants.get(company)
        if tenant is None:
            return []
        held = [self._open[i] for i in tenant.open_ids]
        return sorted([*tenant.listens, *held], key=lambda listen: (listen.start, listen.id))

    def listens(self, company: str | None = None, *, since: float | None = None) -> list[Listen]:
        """Listens (finished and open) that were open at or after ``since``, by start."""
        out: list[Listen] = []
        for name in self._names(company):
            out += [
                listen
                for listen in self._listens_of(name)
                if since is None or listen.end is None or listen.end >= since
            ]
        return sorted(out, key=lambda listen: (listen.start, listen.id))

    def token_fetches(
        self, company: str | None = None, *, since: float | None = None
    ) -> list[TokenFetch]:
        out: list[TokenFetch] = []
        for name in self._names(company):
            tenant = self._tenants.get(name)
            if tenant is not None:
                out += [f for f in tenant.fetches if since is None or f.at >= since]
        return sorted(out, key=lambda f: f.at)

    def calls(self, company: str | None = None, *, since: float | None = None) -> list[Call]:
        """OpenApi requests made with ``company``'s tokens at or after ``since``."""
        out: list[Call] = []
        for name in self._names(company):
            tenant = self._tenants.get(name)
            if tenant is not None:
                out += [c for c in tenant.calls if since is None or c.at >= since]
        return sorted(out, key=lambda c: c.at)

    def overlaps(self, company: str | None = None, *, since: float | None = None) -> list[Overlap]:
        """Times two listens of one company were open at once from different replicas or
        under different tokens (a replica's own listens under one token do not count)."""
        now = self.clock()

        def span(listen: Listen) -> tuple[float, float]:
            return listen.start, now if listen.end is None else listen.end

        def differ(a: Listen, b: Listen) -> bool:
            return a.replica != b.replica or a.token != b.token

        out: list[Overlap] = []
        for name in self._names(company):
            for a, b, (start, end) in _intervals.overlaps(self._listens_of(name), span, differ):
                if since is None or end >= since:
                    out.append(Overlap(name, a, b, start, end, a.open and b.open))
        return sorted(out, key=lambda o: o.start)

    def gaps(
        self,
        companies: Iterable[str] | None = None,
        *,
        since: float | None = None,
        min_seconds: float = 0.0,
    ) -> list[Gap]:
        """Times in ``[since, now)`` with no listen open, per company (default: every
        company the log knows), at least ``min_seconds`` long. ``since`` defaults to the
        log's start and is raised to each company's horizon."""
        now = self.clock()
        window = self.started if since is None else since
        out: list[Gap] = []
        for name in self._names(None) if companies is None else companies:
            tenant = self._tenants.get(name)
            start = max(window, tenant.horizon) if tenant is not None else window
            spans = [(li.start, now if li.end is None else li.end) for li in self._listens_of(name)]
            for s, e in _intervals.gaps(spans, start, now):
                if e - s >= min_seconds:
                    clipped = s == start and not _ends_at(spans, s)
                    out.append(Gap(name, s, e, e >= now, clipped))
        return sorted(out, key=lambda g: (g.start, g.company))


def _ends_at(spans: list[tuple[float, float]], moment: float) -> bool:
    """Whether some span ends exactly at ``moment`` (so a gap from there is not clipped)."""
    return any(e == moment for _, e in spans)
