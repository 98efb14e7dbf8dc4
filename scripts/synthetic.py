"""Synthetic jobs for the benchmarks (scripts/bench-tui, scripts/bench-api): not product code.

Imported by the bench scripts from this folder (they put scripts/ on sys.path).
"""

from __future__ import annotations

from db import Store
from db.grid import is_postgres


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


def fill_queued(store: Store, n: int, *, batch: str = "bench queued") -> int:
    """Add ``n`` queued jobs (no message published, no result) in one batch, set-based;
    returns the batch's id. PostgreSQL only (benchmarks of ``runner cancel``)."""
    if not is_postgres(store):
        raise ValueError("fill_queued needs PostgreSQL")
    with store.dialect.transaction() as cur:
        cur.execute("INSERT INTO batches (name, created_at, size) VALUES (%s, now(), %s) RETURNING id", (batch, n))
        batch_id = int(cur.fetchone()[0])
        cur.execute(
            "INSERT INTO jobs (batch_id, url, options, state, submitted_at, published_at) "
            "SELECT %s, 'https://queued' || (g %% 5000) || '.example/item/' || g, '{}', 'queued', now(), now() "
            "FROM generate_series(1, %s) AS g",
            (batch_id, n),
        )
    with store.dialect.transaction() as cur:
        cur.execute("ANALYZE jobs")
    return batch_id
