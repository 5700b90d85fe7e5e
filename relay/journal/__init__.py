"""The journal: the relay's embedded durable store (SQLite, WAL mode).

Where it sits: the source appends events (and the tenant's new ``Ver``) here *before*
it sends the next ``listen``; every sink drains it on its own. What is committed here
is never lost, so the relay is at-least-once end to end.

Why it is shaped this way:

- **One thread owns the writing connection.** SQLite calls block, so every write runs
  on one dedicated worker thread; the event loop only awaits futures. One writer also
  means no locking questions inside the process. Reads (a drainer's claim, stats) run
  on a second, query-only connection in a thread of their own: in WAL mode they see
  every committed write and never wait behind a commit's fsync.
- **Group commit.** Writes (appends, delivery outcomes, checkpoints) are queued and the
  writer runs everything queued so far in one transaction: a burst costs a few fsyncs,
  not one per event. A batch holding only delivery outcomes (or prune deletes) commits
  without an fsync: a power cut may forget it, which costs a repeated delivery with the
  same id, never a lost event; the next append's fsync makes it durable anyway.
  ``synchronous=FULL`` (default) keeps appends through a power loss; ``NORMAL``
  survives ``kill -9`` but not a power cut.
- **Delivery rows per sink.** Each event gets one ``deliveries`` row per sink it is
  routed to, with state (pending, delivered, dead), attempt count, next attempt time and
  the last error. ``events.remaining`` counts the rows not yet final, so the backlog
  bound is tracked in memory without scanning.
- **The counters move with the commit.** Each write function records its change to the
  backlog (events, bytes) and the event total inside its transaction; the writer applies
  the batch's changes right after ``COMMIT``, before it resumes any waiter. A caller
  cancelled mid-write cannot skip them; a rolled-back write changes nothing.
- **Other processes are noticed.** ``exmail-relay deadletters replay`` and ``endpoint``
  open their own journal on the same file. ``PRAGMA data_version`` tells the writer that
  another connection committed; the counters are then recounted in the same transaction,
  from a partial index sized by the backlog (``events_backlog``, schema 3). Another
  *relay* is not welcome: ``exmail-relay run`` holds :class:`JournalLock` (a ``flock``
  on ``<journal>.lock``) for its whole life, and a second one on the file exits.
- **Idempotent appends.** ``events.id`` is unique; appending an id twice stores it once.
- **Bounded.** Past ``max_events`` or ``max_bytes`` of undelivered events,
  :meth:`Journal.wait_capacity` blocks the source until sinks drain (backpressure, not
  loss). Delivered events stay for ``retention`` (replay), then are pruned.

The package: :mod:`._journal` (the :class:`Journal` facade, appends and settlements),
:mod:`._writer` (the writer thread, group commit, the counters), :mod:`._reads` (the
query-only connection and its queries), :mod:`._admin` (replay, disable, prune),
:mod:`._schema` (tables, version, migrations, connections), :mod:`._salvage` (``journal
check`` and ``journal salvage``: a damaged file read range by range into a new one),
:mod:`._lock` (the single-writer guard: one relay per file, a ``flock`` on
``<journal>.lock``), :mod:`._records` and :mod:`._exceptions`.

Exceptions::

    JournalError        the root: the journal cannot be opened, a read or a write failed
     +-- JournalClosed  the journal was used after Journal.close()
     +-- JournalCorrupt the file is damaged; the message names it and the recovery
     |                  (exmail-relay journal check / journal salvage)
     +-- JournalInUse   another process holds the file's lock (JournalLock): a running
                        relay or a salvage; the message names its pid, host and start
"""

from relay.journal._exceptions import JournalClosed, JournalCorrupt, JournalError, JournalInUse
from relay.journal._filter import DeadFilter
from relay.journal._journal import Journal
from relay.journal._listing import ListingWrite, StoredListing
from relay.journal._listing import write as listing_write
from relay.journal._lock import Holder, JournalLock, lock_path
from relay.journal._records import DeadLetter, JournalStats, SinkStats
from relay.journal._salvage import Check, Copied, Salvage, check_file, salvage_file

__all__ = [
    "Check",
    "Copied",
    "DeadFilter",
    "DeadLetter",
    "Holder",
    "Journal",
    "JournalClosed",
    "JournalCorrupt",
    "JournalError",
    "JournalInUse",
    "JournalLock",
    "JournalStats",
    "ListingWrite",
    "Salvage",
    "SinkStats",
    "StoredListing",
    "check_file",
    "listing_write",
    "lock_path",
    "salvage_file",
]
