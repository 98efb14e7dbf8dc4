"""Reads the TUI's grid needs beyond :class:`db.Store`'s listings and counts: the status
line's counts and the recent batches.

Every query here is shaped so that it costs the same at 10,000 and 1,000,000 jobs, or
as little as the job table allows: counts without a filter skip the joins, and the
status counts read each table once instead of grouping the join.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from .dialects import Postgres
from .models import Batch, Counts
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
        cur.execute("SELECT state, count(*) FROM jobs GROUP BY state")
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


def fill_synthetic(store: Store, n: int, *, batch: str = "bench") -> int:
    """Add ``n`` done jobs with results in a few set-based statements (benchmarks only).

    PostgreSQL only: ``generate_series`` fills a million rows in seconds. Every tenth job
    failed with HTTP 500; latencies and sizes vary so every order has work to do.
    """
    if not is_postgres(store):
        raise ValueError("fill_synthetic needs PostgreSQL")
    with store.dialect.transaction() as cur:
        cur.execute("INSERT INTO batches (name, created_at, size) VALUES (%s, now(), %s) RETURNING id", (batch, n))
        batch_id = cur.fetchone()[0]
        cur.execute("SELECT COALESCE(max(id), 0) FROM jobs")
        first = int(cur.fetchone()[0]) + 1
        cur.execute(
            "INSERT INTO jobs (batch_id, url, options, state, submitted_at, published_at) "
            "SELECT %s, 'https://site' || (g %% 5000) || '.example/page/' || g, '{}', 'done', "
            "now() - (%s - g) * interval '10 ms', now() - (%s - g) * interval '10 ms' "
            "FROM generate_series(1, %s) AS g",
            (batch_id, n, n, n),
        )
        cur.execute(
            "INSERT INTO results (job_id, outcome, ok, status_code, total_ms, attempts, error, final_url, bytes, "
            "content_type, title, checked_at, worker, detail) "
            "SELECT id, CASE WHEN id %% 10 = 0 THEN 'http_error' ELSE 'ok' END, id %% 10 <> 0, "
            "CASE WHEN id %% 10 = 0 THEN 500 ELSE 200 END, ((id * 7919) %% 20000) / 10.0, 1, "
            "CASE WHEN id %% 10 = 0 THEN 'HTTP 500 Internal Server Error (expected 200-399)' END, url, "
            "1000 + id %% 50000, 'text/html', 'Page ' || id, submitted_at + interval '150 ms', 'bench', '{}' "
            "FROM jobs WHERE id >= %s",
            (first,),
        )
    with store.dialect.transaction() as cur:
        cur.execute("ANALYZE jobs")
        cur.execute("ANALYZE results")
    return n
