"""Reads the TUI's grid needs beyond :class:`db.Store`'s listings and counts: the status
line's counts and the recent batches.

Every query here is shaped so that it costs the same at 10,000 and 1,000,000 jobs, or
as little as the job table allows: counts without a filter skip the joins, and the
status counts read each table once instead of grouping the join.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .models import Batch, Counts
from .postgres import Postgres
from .states import job_state
from .store import Store, utcnow

# Keysets that sort after every real row, per order: ``list_jobs(before=TAIL[order])``
# returns the last page (rows still in display order), so End costs one index probe.
TAIL: dict[str, tuple[Any, ...]] = {
    "newest": (-1,),
    "oldest": (1 << 62,),
    "latency": (-1.0e300, -1),
    "status": (-(1 << 31), -1),
    "checked": (datetime(1970, 1, 1, tzinfo=UTC), -1),
}


def quick_counts(store: Store, *, now: datetime | None = None) -> Counts:
    """Jobs by state, results ok/failed and results in the last minute, one scan per table."""
    d = store.dialect
    now = now or utcnow()
    with d.transaction(write=False) as cur:
        cur.execute(f"SELECT {job_state()} AS st, count(*) FROM jobs j GROUP BY st")
        states = {state: int(n) for state, n in cur.fetchall()}
        cur.execute("SELECT ok, count(*) FROM results GROUP BY ok")
        ok = failed = 0
        for value, n in cur.fetchall():
            if value:
                ok += int(n)
            else:
                failed += int(n)
        cur.execute("SELECT count(*) FROM results WHERE checked_at >= %s", (d.ts(now - timedelta(minutes=1)),))
        last_minute = int(cur.fetchone()[0])
    return Counts(
        queued=states.get("queued", 0), running=states.get("running", 0), done=states.get("done", 0),
        cancelled=states.get("cancelled", 0),
        ok=ok, failed=failed, done_last_minute=last_minute,
    )


def recent_batches(store: Store, limit: int = 50) -> list[Batch]:
    """The newest batches, for the batch quick filter."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute("SELECT id, name, created_at, size FROM batches ORDER BY id DESC LIMIT %s", (limit,))
        rows = cur.fetchall()
    return [Batch(r[0], r[1], d.parse_ts(r[2]), r[3]) for r in rows]


def is_postgres(store: Store) -> bool:
    return isinstance(store.dialect, Postgres)
