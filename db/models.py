"""Plain values the store returns: never cursors, never rows tied to a connection."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .regions import DEFAULT_REGION, Placement

STATES = ("queued", "running", "done")


def utcnow() -> datetime:
    return datetime.now(UTC)


# Orders the job listing supports; each maps to a keyset column in store.py.
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


@dataclass(frozen=True)
class ResultRecord:
    """What a worker stores for one job: the core columns and the whole result as JSON."""

    job_id: int
    outcome: str
    ok: bool
    status_code: int | None
    total_ms: float | None
    attempts: int
    error: str | None
    final_url: str | None
    bytes: int | None
    content_type: str | None
    title: str | None
    checked_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    worker: str | None = None
    region: str = DEFAULT_REGION  # where the check ran (its worker's region)


@dataclass(frozen=True)
class RegionResult:
    """One region's result for a job (a job has one per region it asked for, once heard)."""

    job_id: int
    region: str
    outcome: str
    ok: bool
    status_code: int | None
    total_ms: float | None
    attempts: int
    error: str | None
    worker: str | None
    checked_at: datetime
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobView:
    """A job with its result (when it has one): what listings and the UI show."""

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
    outcome: str | None
    ok: bool | None
    status_code: int | None
    total_ms: float | None
    attempts: int | None
    error: str | None
    final_url: str | None
    bytes: int | None
    content_type: str | None
    title: str | None
    detail: dict[str, Any] | None = None

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
    ok: int = 0
    failed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    # queued jobs whose message was never confirmed by the broker
    unpublished: int = field(default=0, metadata={"scope": "every job"})
    done_last_minute: int = field(default=0, metadata={"scope": "every job"})
    slowest: tuple[Slow, ...] = field(default=(), metadata={"scope": "a batch, when asked"})

    @property
    def total(self) -> int:
        return self.queued + self.running + self.done

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
