"""Bulk SQL for imports: recording a large chunk of jobs fast, and reading a batch back.

``record_jobs`` on PostgreSQL reserves the chunk's ids from the jobs sequence in one
statement, then sends the rows with ``COPY FROM STDIN`` (several times faster than a
multi-row INSERT ... RETURNING), all in one transaction with the batch's size. On SQLite
it falls back to :meth:`Store.insert_jobs`. Values never reach the SQL text: COPY data is
escaped for the COPY text format, everything else is a ``%s`` parameter.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .dialects import Postgres
from .models import NewJob
from .store import Store, tally, utcnow

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    # Normalised URLs and JSON text almost never need escaping; translate() is slow.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def record_jobs(store: Store, batch_id: int | None, jobs: Sequence[tuple[str, str]], *,
                now: datetime | None = None) -> list[int]:
    """Record ``(url, options as JSON text)`` jobs, state queued, in one transaction.

    Returns their ids in order. The batch's size grows in the same transaction, so after
    a crash ``batches.size`` says exactly how many jobs of the batch were recorded.
    """
    if not jobs:
        return []
    d = store.dialect
    if not isinstance(d, Postgres):
        return store.insert_jobs(batch_id, [NewJob(url, json.loads(opts)) for url, opts in jobs], now=now)
    submitted = (now or utcnow()).isoformat()
    batch_text = "\\N" if batch_id is None else str(batch_id)
    with d.transaction() as cur:
        cur.execute(
            "SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, %s)",
            (len(jobs),),
        )
        ids = [row[0] for row in cur.fetchall()]
        buf = io.StringIO()
        write = buf.write
        for job_id, (url, opts) in zip(ids, jobs, strict=True):
            write(f"{job_id}\t{batch_text}\t{_copy_text(url)}\t{_copy_text(opts)}\tqueued\t{submitted}\n")
        buf.seek(0)
        cur.copy_expert(
            "COPY jobs (id, batch_id, url, options, state, submitted_at) FROM STDIN", buf, size=1 << 20
        )
        if batch_id is not None:
            cur.execute("UPDATE batches SET size = size + %s WHERE id = %s", (len(ids), batch_id))
        store._notify(cur)
    return ids


def unpublished_jobs(store: Store, batch_id: int, *, after_id: int = 0,
                     limit: int = 5000) -> list[tuple[int, str, dict[str, Any]]]:
    """Queued jobs of a batch whose message was never confirmed: ``(id, url, options)``.

    A retried import (same idempotency key) publishes these again, so a run that died
    between recording and publishing heals itself without waiting for ``requeue --stale``.
    """
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute(
            "SELECT id, url, options FROM jobs WHERE batch_id = %s AND id > %s AND state = 'queued' "
            "AND published_at IS NULL ORDER BY id LIMIT %s",
            (batch_id, after_id, limit),
        )
        rows = cur.fetchall()
    return [(r[0], r[1], d.parse_json(r[2]) or {}) for r in rows]


@dataclass(frozen=True)
class Slow:
    job_id: int
    url: str
    total_ms: float
    outcome: str


@dataclass(frozen=True)
class BatchSummary:
    """Where a batch stands: jobs by state, results by outcome, the slowest checks."""

    total: int = 0
    queued: int = 0
    running: int = 0
    done: int = 0
    ok: int = 0
    failed: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    slowest: tuple[Slow, ...] = ()

    @property
    def pending(self) -> int:
        return self.queued + self.running


def batch_summary(store: Store, batch_id: int, *, slowest: int = 0) -> BatchSummary:
    """Counts for one batch in two aggregate queries (never one row per job)."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute(
            "SELECT j.state, r.outcome, r.ok, count(*) FROM jobs j LEFT JOIN results r ON r.job_id = j.id "
            "WHERE j.batch_id = %s GROUP BY j.state, r.outcome, r.ok",
            (batch_id,),
        )
        rows = cur.fetchall()
        slow_rows: list[Any] = []
        if slowest:
            cur.execute(
                "SELECT j.id, j.url, r.total_ms, r.outcome FROM jobs j JOIN results r ON r.job_id = j.id "
                "WHERE j.batch_id = %s AND r.total_ms IS NOT NULL ORDER BY r.total_ms DESC, j.id LIMIT %s",
                (batch_id, slowest),
            )
            slow_rows = cur.fetchall()
    states, by_outcome, ok, failed = tally(rows)
    return BatchSummary(
        total=sum(states.values()), queued=states["queued"], running=states["running"], done=states["done"],
        ok=ok, failed=failed, by_outcome=by_outcome,
        slowest=tuple(Slow(r[0], r[1], float(r[2]), r[3]) for r in slow_rows),
    )
