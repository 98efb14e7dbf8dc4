"""Reading a batch back: where it stands (jobs by state, results by outcome, the slowest).

Two aggregate queries per call, never one row per job, so a million-job batch is summed
by the database.
"""

from __future__ import annotations

from typing import Any

from .listing import tally
from .models import Counts, Slow
from .states import job_state
from .store import Store


def batch_summary(store: Store, batch_id: int, *, slowest: int = 0) -> Counts:
    """Counts for one batch in two aggregate queries (never one row per job)."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute(
            f"SELECT {job_state()} AS st, r.outcome, r.ok, count(*) FROM jobs j LEFT JOIN results r ON r.job_id = j.id "
            "WHERE j.batch_id = %s GROUP BY st, r.outcome, r.ok",
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
    return Counts(
        queued=states["queued"], running=states["running"], done=states["done"], cancelled=states["cancelled"],
        ok=ok, failed=failed, by_outcome=by_outcome,
        slowest=tuple(Slow(r[0], r[1], float(r[2]), r[3]) for r in slow_rows),
    )
