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
from .models import Batch, NewJob, batch_id_of, utcnow
from .states import taken_back

# Hourly rollups are kept this long (or as long as the results, if longer): a window starts
# to the hour within them, to the day beyond (daily rollups are kept a year by default).
HOURLY_ROLLUPS = timedelta(days=35)


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
        with self.dialect.transaction(announce=True) as cur:
            return record_jobs(cur, self.dialect, batch_id, jobs, now or utcnow())

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

    def mark_running(self, started: Sequence[tuple[int, datetime]]) -> None:
        """These jobs' checks began: ``(job id, when it began)`` pairs. A job already done
        keeps its state (its running mark arrived late)."""
        if not started:
            return
        d = self.dialect
        with d.transaction(announce=True) as cur:
            d.lock_jobs(cur, [job_id for job_id, _ in started])
            d.share_batches(cur, [job_id for job_id, _ in started])
            d.mark_running(cur, started)

    def cancel_jobs(self, *, batch: str | int | None = None, ids: Sequence[int] | None = None,
                    count_only: bool = False) -> int:
        """Take back every queued job (of ``batch``: a name or an id as text, or exactly the
        id as an int; or of ``ids``; neither: every queued job): it is ``cancelled`` from
        then on and no worker checks it (see :meth:`Results.skip_ids`). Done, running and
        cancelled jobs, and every stored result, stay as they are. Returns how many jobs
        were (with ``count_only``: would be) cancelled.

        A batch (and every batch that has queued jobs, for all of them) is taken back by
        one mark, ``batches.cancelled_at``, whatever its size (:mod:`db.states`: every read
        sees its queued jobs as cancelled, and so does every job recorded in it later, an
        import still running or a crawl's pages in flight). The mark waits for the running
        marks and results being stored in that batch at that moment (:meth:`Dialect.lock_batch`),
        so the count is exact: each of those jobs is then running or done, not cancelled.
        Jobs by id, and queued jobs without a batch, are updated row by row, in one
        set-based UPDATE.
        """
        d = self.dialect
        now = d.ts(utcnow())
        batch_ids: list[int] = []
        rows: tuple[str, list[Any]] | None = None  # the jobs taken back by their rows
        if ids is not None:
            rows = d.any_of("id", sorted(set(ids)))
        if batch is not None:
            found = self._batch_ids(batch)
            if rows is not None:
                test, params = d.any_of("batch_id", found or [0])
                rows = (f"{rows[0]} AND {test}", [*rows[1], *params])
            else:
                batch_ids = found
        elif ids is None:  # every queued job
            with d.transaction(write=False) as cur:
                cur.execute("SELECT id FROM batches b WHERE cancelled_at IS NULL AND EXISTS "
                            "(SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state = 'queued') ORDER BY id")
                batch_ids = [row[0] for row in cur.fetchall()]
            rows = ("batch_id IS NULL", [])
        total = 0
        for batch_id in batch_ids:
            with d.transaction(write=not count_only, announce=not count_only) as cur:
                if not count_only:
                    d.lock_batch(cur, batch_id)
                    # A crawl of the batch takes no new URL: pages still in flight add nothing.
                    # (crawls before batches: the order a crawl's claim takes them in)
                    cur.execute("UPDATE crawls SET max_urls = urls WHERE batch_id = %s", (batch_id,))
                    cur.execute("UPDATE batches SET cancelled_at = %s WHERE id = %s AND cancelled_at IS NULL",
                                (now, batch_id))
                    marked = cur.rowcount > 0
                else:
                    cur.execute("SELECT count(*) FROM batches WHERE id = %s AND cancelled_at IS NULL", (batch_id,))
                    marked = int(cur.fetchone()[0]) > 0
                if marked:  # (taken back before: nothing more to count)
                    cur.execute("SELECT count(*) FROM jobs WHERE batch_id = %s AND state = 'queued'", (batch_id,))
                    total += int(cur.fetchone()[0])
        if rows is not None:
            where = f"jobs.state = 'queued' AND NOT {taken_back('jobs')} AND {rows[0]}"
            with d.transaction(write=not count_only, announce=not count_only) as cur:
                if count_only:
                    cur.execute(f"SELECT count(*) FROM jobs WHERE {where}", rows[1])
                    total += int(cur.fetchone()[0])
                else:
                    # Read through the primary key or jobs_batch: rows locked in id order.
                    d.in_index_order(cur)
                    cur.execute(f"UPDATE jobs SET state = 'cancelled' WHERE {where}", rows[1])
                    total += max(cur.rowcount, 0)
        return total

    def _batch_ids(self, batch: str | int) -> list[int]:
        """The batches a ``--batch`` names: exactly this id (an int), or by name or id (text)."""
        if isinstance(batch, int):
            return [batch]
        with self.dialect.transaction(write=False) as cur:
            if (as_id := batch_id_of(batch)) is not None:
                cur.execute("SELECT id FROM batches WHERE name = %s OR id = %s ORDER BY id", (batch, as_id))
            else:
                cur.execute("SELECT id FROM batches WHERE name = %s ORDER BY id", (batch,))
            return [row[0] for row in cur.fetchall()]

    def settle_cancelled(self, ids: Sequence[int]) -> int:
        """Turn the rows of these jobs, if taken back with their batch but still ``queued``
        in their row, to ``cancelled`` (what every read already says they are): a worker
        calls it for the messages it drops, so a cancelled batch's rows are rewritten a few
        hundred at a time beside the checks instead of a million in the cancel. Returns how
        many rows changed."""
        if not ids:
            return 0
        d = self.dialect
        test, params = d.any_of("id", sorted(set(ids)))
        with d.transaction() as cur:
            d.lock_jobs(cur, ids)
            cur.execute(f"UPDATE jobs SET state = 'cancelled' WHERE {test} AND {taken_back('jobs')}", params)
            return int(max(cur.rowcount, 0))

    def _update_ids(self, sql: str, params: list[Any], ids: Sequence[int]) -> None:
        if not ids:
            return
        test, id_params = self.dialect.any_of("id", ids)
        with self.dialect.transaction(announce=True) as cur:
            self.dialect.lock_jobs(cur, ids)
            cur.execute(sql.format(test), [*params, *id_params])

    def prune(self, older_than: timedelta, *, now: datetime | None = None, chunk: int = 5000,
               rollups_older_than: timedelta = timedelta(days=365)) -> int:
        """Delete done and cancelled jobs (and their results) submitted before the cutoff, a chunk per
        transaction so no lock is held for long; then hourly rollups older than
        ``HOURLY_ROLLUPS`` and daily ones older than ``rollups_older_than`` (URLs' states
        and changes stay). Then the tables are vacuumed, so the space is reused by the next
        day's rows instead of the files growing. Returns how many jobs were deleted.

        The chunks walk the primary key forward from where the last one ended, up to the
        newest id submitted before the cutoff: no chunk reads again the index entries its
        predecessors deleted (still there until the vacuum), and the walk never reads the
        jobs kept (29 days of 30: a scan of most of the table, were it to look for more).
        """
        d = self.dialect
        now = now or utcnow()
        cutoff = d.ts(now - older_than)
        prunable = f"(state IN ('done', 'cancelled') OR {taken_back('jobs')}) AND submitted_at < %s"
        total = 0
        with d.transaction(write=False) as cur:
            # count(*) keeps the planner on jobs_submitted's range (min and max alone would walk
            # the primary key from each end, the max one through every job kept).
            cur.execute("SELECT min(id), max(id), count(*) FROM jobs WHERE submitted_at < %s", (cutoff,))
            first, last, _ = cur.fetchone()
        after = (first or 0) - 1
        while last is not None and after < last:
            with d.transaction() as cur:
                cur.execute(f"SELECT max(id), count(*) FROM (SELECT id FROM jobs WHERE {prunable} AND id > %s "
                            "AND id <= %s ORDER BY id LIMIT %s) c", (cutoff, after, last, chunk))
                upto, found = cur.fetchone()
                if not found:
                    break
                cur.execute(f"DELETE FROM jobs WHERE {prunable} AND id > %s AND id <= %s", (cutoff, after, upto))
                total += max(cur.rowcount, 0)
            after = upto
        with d.transaction() as cur:
            cur.execute(
                "DELETE FROM batches WHERE created_at < %s AND NOT EXISTS "
                "(SELECT 1 FROM jobs WHERE jobs.batch_id = batches.id)",
                (cutoff,),
            )
        for grain, keep in (("h", max(HOURLY_ROLLUPS, older_than)), ("d", rollups_older_than)):
            while True:
                with d.transaction() as cur:
                    cur.execute(
                        "DELETE FROM url_rollups WHERE (url_id, grain, start, region) IN (SELECT url_id, grain, start, "
                        "region FROM url_rollups WHERE grain = %s AND start < %s LIMIT %s)",
                        (grain, d.ts(now - keep), chunk),
                    )
                    if cur.rowcount < chunk:
                        break
        # urls too: every result rewrites its URL's row, and a server without autovacuum
        # (as this project's test machine runs) would otherwise never reclaim those versions.
        d.vacuum(["jobs", "results", "region_results", "url_rollups", "urls"])
        return total


def record_jobs(cur: Any, d: Dialect, batch_id: int | None, jobs: Sequence[NewJob], now: datetime) -> list[int]:
    """:meth:`Jobs.insert_jobs` within the caller's transaction (a crawl records the jobs of
    the links it claims in the claim's own transaction: both, or neither)."""
    # Each job refers to its URL's row (issue 21), added here (state pending) if new.
    url_ids = d.upsert_urls(cur, [job.url for job in jobs], now)
    ids = d.insert_jobs(cur, batch_id, [(job.url, job.options_json(), url_ids[job.url]) for job in jobs], now)
    if batch_id is not None:
        cur.execute("UPDATE batches SET size = size + %s WHERE id = %s", (len(ids), batch_id))
    return ids
