"""Reads the HTTP API needs beyond the store's listings: a batch by id, and the results
feed (results in the order they were stored, ``results.seq``) for the API's event stream
and its ``Last-Event-ID`` resumption.

``seq`` comes from a sequence on PostgreSQL: numbers are taken at insert and committed
in nearly, not strictly, that order (two writers' transactions may commit crosswise), so a
reader that has seen N may later see a smaller number appear. The reader in
``runner.api.events`` holds back over such gaps for a moment; this module only reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .listing import _FROM, _JOB_COLUMNS
from .models import Batch, JobFilter, JobView
from .store import Store


def seqs_after(store: Store, after_seq: int, *, limit: int = 5000) -> list[int]:
    """The seqs of every result stored after ``after_seq``, unfiltered (an index-only scan):
    the reader tells a gap in the numbers from a filtered-out row."""
    with store.dialect.transaction() as cur:
        cur.execute("SELECT seq FROM results WHERE seq > %s ORDER BY seq LIMIT %s", (after_seq, limit))
        return [int(row[0]) for row in cur.fetchall()]


def results_by_seq(store: Store, seqs: Sequence[int], flt: JobFilter = JobFilter()) -> list[tuple[int, JobView]]:
    """The results with these seqs that match ``flt``: ``(seq, job)`` in seq order, each job
    with its details (what ``runner results --format json`` shows)."""
    if not seqs:
        return []
    where, params = store._where(flt, True)
    test, seq_params = store.dialect.any_of("r.seq", seqs)
    where.append(test)
    params.extend(seq_params)
    sql = f"SELECT {_JOB_COLUMNS}, r.detail, r.seq {_FROM} WHERE {' AND '.join(where)} ORDER BY r.seq"
    with store.dialect.transaction() as cur:
        cur.execute(sql, params)
        rows: list[Any] = cur.fetchall()
    return [(int(row[-1]), store._view(row, True)) for row in rows]


def latest_seq(store: Store) -> int:
    """The highest seq stored so far (0 when there is no result)."""
    with store.dialect.transaction() as cur:
        cur.execute("SELECT COALESCE(max(seq), 0) FROM results")
        return int(cur.fetchone()[0])


def get_batch(store: Store, batch_id: int) -> Batch | None:
    d = store.dialect
    with d.transaction() as cur:
        cur.execute("SELECT id, name, created_at, size, idempotency_key FROM batches WHERE id = %s", (batch_id,))
        row = cur.fetchone()
    return Batch(row[0], row[1], d.parse_ts(row[2]), row[3], row[4]) if row else None
