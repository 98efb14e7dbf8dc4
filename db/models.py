"""Plain values the store returns: never cursors, never rows tied to a connection.

A result's fields are declared once, in the leaf :mod:`runner.fields` (the one module of
``runner`` that db imports: the check fills the same fields, and check and db may not
import each other).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from runner.fields import ResultFields

from .regions import DEFAULT_REGION, Placement

STATES = ("queued", "running", "done", "cancelled")
# States a job can still leave; a cancelled job was taken back before its check (runner cancel).
OPEN_STATES = ("queued", "running")
URL_STATES = ("ok", "slow", "failing", "pending")  # a URL's standing (db/history.py)
# What a recorded change is: the state moving from nothing (new), into failing, out of it
# (or out of slow), into slow; still_failing is never recorded by the state machine (it is
# what ``runner changes`` calls a URL failing both times) but consumers may see it there.
CHANGES = ("new_failure", "recovered", "new", "still_failing", "slower")


def utcnow() -> datetime:
    return datetime.now(UTC)


def batch_id_of(text: str) -> int | None:
    """The batch id a ``--batch``/``batch=`` text may be: ASCII digits that fit a bigint.
    ``isdigit()`` alone takes "²" (which ``int()`` refuses) and "٣" (which it reads as 3):
    those, and 19 digits or more, are names only."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


# Orders the job listing supports; each maps to a keyset column in listing.py.
ORDERS = ("newest", "oldest", "latency", "status", "checked")


class NewJob(NamedTuple):
    """A validated URL with its options, ready to be recorded.

    ``options`` is a dict, or the same already as JSON text (a batch import validates a
    few distinct option sets for a million lines, and keeps each as text). A tuple, not a
    dataclass: an import makes a million of them.
    """

    url: str
    options: dict[str, Any] | str = "{}"

    def options_json(self) -> str:
        if isinstance(self.options, str):
            return self.options
        return json.dumps(self.options, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Batch:
    id: int
    name: str
    created_at: datetime
    size: int
    idempotency_key: str | None = None
    existed: bool = False  # True when an idempotency key matched an earlier batch


@dataclass(kw_only=True)
class ResultRecord(ResultFields):
    """A stored result: the result's fields (:mod:`runner.fields`), its job, when and where
    it was checked, and the whole result as JSON (``detail``). What a worker hands the store
    for one job (or one region of a job), and what region results are read back as.

    Not frozen (its fields are the check's, whose result is built as it goes); nothing
    changes one once made.
    """

    job_id: int
    outcome: str  # NOT NULL columns: a stored result always has them
    ok: bool
    attempts: int
    checked_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    region: str = DEFAULT_REGION  # where the check ran (its worker's region)


@dataclass(kw_only=True)
class JobView(ResultFields):
    """A job with its result's fields (None until it has a result): what listings and the
    UI show."""

    id: int
    url: str
    batch: str | None
    batch_id: int | None
    state: str
    options: dict[str, Any]
    submitted_at: datetime
    published_at: datetime | None
    publish_error: str | None
    started_at: datetime | None
    checked_at: datetime | None
    detail: dict[str, Any] | None = None
    referrers: list[dict[str, str]] | None = None  # a crawl's: the pages that link here (db/crawls.py)

    @property
    def placement(self) -> Placement:
        return Placement.of(self.options)

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions this job asked for (the default region when it named none)."""
        return self.placement.regions

    @property
    def quorum(self) -> str:
        return self.placement.quorum


@dataclass(frozen=True)
class JobFilter:
    """Filters for listings; every one is applied in SQL."""

    state: str | None = None
    outcome: str | None = None
    batch: str | None = None  # batch name or numeric id
    since: datetime | None = None  # submitted at or after
    text: str | None = None  # substring of the URL
    url: str | None = None  # exactly this normalised URL (every job of it)
    failed: bool = False  # done and not ok
    ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Slow:
    """One of a batch's slowest checks."""

    job_id: int
    url: str
    total_ms: float
    outcome: str


@dataclass(frozen=True)
class Counts:
    """Jobs by state and their results by outcome, summed by the database: of every job
    (``Store.counts``: ``runner status``, the TUI) or of one batch
    (:func:`db.batches.batch_summary`: ``--wait``, the API's ``/api/v1/batches/ID``, whose
    answer has the fields without a ``scope``)."""

    queued: int = 0
    running: int = 0
    done: int = 0
    cancelled: int = 0  # taken back before their check (runner cancel)
    ok: int = 0
    failed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    # queued jobs whose message was never confirmed by the broker
    unpublished: int = field(default=0, metadata={"scope": "every job"})
    done_last_minute: int = field(default=0, metadata={"scope": "every job"})
    slowest: tuple[Slow, ...] = field(default=(), metadata={"scope": "a batch, when asked"})

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done + self.cancelled

    @property
    def pending(self) -> int:
        return self.queued + self.running


@dataclass(frozen=True)
class WorkerBeat:
    id: str
    host: str
    pid: int
    queue: str
    concurrency: int
    processed: int
    started_at: datetime
    last_seen: datetime
    region: str = DEFAULT_REGION
    concurrency_max: int | None = None  # the adaptive limit's ceiling; None: fixed at concurrency


@dataclass(frozen=True)
class Change:
    """A URL's state moving, with the result that moved it: a row of ``url_changes``.

    Made in the transaction that records the result (db/results.py), and handed to the
    alerts hook there (``Results._on_changes``). ``url`` is the URL as stored (credentials
    included: mask it when shown). ``region`` is the region the deciding check ran in, None
    for the quorum of a job that named regions.
    """

    url_id: int
    url: str
    change: str  # one of CHANGES
    from_state: str | None  # None: the URL had no state (pending) before
    to_state: str
    at: datetime
    job_id: int
    batch_id: int | None
    outcome: str
    status_code: int | None
    error: str | None
    region: str | None
