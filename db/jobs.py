"""Recording jobs and moving their state (the ``jobs`` and ``batches`` tables), for the store.

Every write takes its jobs' row locks in id order (:meth:`Dialect.lock_jobs`): workers
(running, done) and submitters (published) update overlapping jobs at once, and in one
order they wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from .dialects import Dialect
from .models import Batch, NewJob, utcnow


class Jobs:
    """The store's methods that write jobs and batches (:class:`db.Store` is made of one
    such part per table)."""

    dialect: Dialect

    def create_batch(self, name: str, idempotency_key: str | None = None, *, now: datetime | None = None) -> Batch:
        """A new batch, or the earlier one with the same idempotency key (``existed=True``)."""
        d = self.dialect
        now = now or utcnow()
        with d.transaction() as cur:
            if idempotency_key is not None:
                cur.execute(
                    "SELECT id, name, created_at, size FROM batches WHERE idempotency_key = %s",
                    (idempotency_key,),
                )
                row = cur.fetchone()
                if row:
                    return Batch(row[0], row[1], d.parse_ts(row[2]), row[3], idempotency_key, existed=True)
            # Two requests with one key at once: the second waits for the first's commit and
            # inserts nothing (not a unique violation); it then answers with the first's batch.
            cur.execute(
                "INSERT INTO batches (name, idempotency_key, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (name, idempotency_key, d.ts(now)),
            )
            row = cur.fetchone()
            if row is None:
                cur.execute("SELECT id, name, created_at, size FROM batches WHERE idempotency_key = %s",
                            (idempotency_key,))
                row = cur.fetchone()
                return Batch(row[0], row[1], d.parse_ts(row[2]), row[3], idempotency_key, existed=True)
            batch_id = row[0]
        return Batch(batch_id, name, now, 0, idempotency_key)

    def insert_jobs(self, batch_id: int | None, jobs: Sequence[NewJob], *, now: datetime | None = None) -> list[int]:
        """Record jobs (state queued) in one transaction; returns their ids in order.

        The one way jobs are recorded, for one URL or a million. On PostgreSQL a chunk of
        ``COPY_FROM`` jobs or more reserves its ids from the sequence in one statement and
        sends the rows with ``COPY FROM STDIN`` (several times faster than a multi-row
        INSERT ... RETURNING); fewer go by INSERT (one round trip). The batch's size grows
        in the same transaction, so after a crash ``batches.size`` says exactly how many
        jobs of the batch were recorded.
        """
        if not jobs:
            return []
        d = self.dialect
        with d.transaction(announce=True) as cur:
            ids = d.insert_jobs(cur, batch_id, [(job.url, job.options_json()) for job in jobs], now or utcnow())
            if batch_id is not None:
                cur.execute("UPDATE batches SET size = size + %s WHERE id = %s", (len(ids), batch_id))
        return ids

    def mark_published(self, ids: Sequence[int], *, now: datetime | None = None,
                       no_worker_at: datetime | None = None) -> None:
        """The broker confirmed these jobs' messages. ``no_worker_at``: when the regions of
        these jobs still without a result and without a live worker are reported no_worker."""
        d = self.dialect
        if no_worker_at is None:
            self._update_ids("UPDATE jobs SET published_at = %s, publish_error = NULL WHERE {}",
                             [d.ts(now or utcnow())], ids)
        else:
            self._update_ids("UPDATE jobs SET published_at = %s, publish_error = NULL, no_worker_at = %s WHERE {}",
                             [d.ts(now or utcnow()), d.ts(no_worker_at)], ids)

    def mark_publish_failed(self, ids: Sequence[int], error: str) -> None:
        """The broker did not confirm these jobs' messages: ``runner requeue`` will find them."""
        self._update_ids("UPDATE jobs SET publish_error = %s WHERE {}", [error], ids)

    def mark_running(self, ids: Sequence[int], *, now: datetime | None = None) -> None:
        self._update_ids(
            "UPDATE jobs SET state = 'running', started_at = %s WHERE state <> 'done' AND {}",
            [self.dialect.ts(now or utcnow())],
            ids,
        )

    def _update_ids(self, sql: str, params: list[Any], ids: Sequence[int]) -> None:
        if not ids:
            return
        test, id_params = self.dialect.any_of("id", ids)
        with self.dialect.transaction(announce=True) as cur:
            self.dialect.lock_jobs(cur, ids)
            cur.execute(sql.format(test), [*params, *id_params])

    def prune(self, older_than: timedelta, *, now: datetime | None = None, chunk: int = 5000) -> int:
        """Delete done jobs (and their results) submitted before the cutoff, a chunk per
        transaction so no lock is held for long. Returns how many jobs were deleted."""
        d = self.dialect
        cutoff = d.ts((now or utcnow()) - older_than)
        total = 0
        while True:
            with d.transaction() as cur:
                cur.execute(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = 'done' "
                    "AND submitted_at < %s ORDER BY id LIMIT %s)",
                    (cutoff, chunk),
                )
                deleted = cur.rowcount
            total += deleted
            if deleted < chunk:
                break
        with d.transaction() as cur:
            cur.execute(
                "DELETE FROM batches WHERE created_at < %s AND NOT EXISTS "
                "(SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id)",
                (cutoff,),
            )
        return total
