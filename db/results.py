"""Storing results (the ``results`` and ``region_results`` tables), for the store: exactly
one per job and region, whatever is redelivered, and the quorum of a job that named regions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from runner.fields import RESULT_KEYS

from .dialects import Dialect
from .models import ResultRecord, utcnow
from .regions import Placement, decide

# The columns of results and region_results: the result's fields (runner.fields), each in
# a column of its name, and where, when and by whom it was checked, and all of it as JSON.
_RESULT_COLUMNS = ", ".join(("region", "job_id", "checked_at", "worker", "detail", *RESULT_KEYS))


def _result_row(d: Dialect, r: ResultRecord) -> tuple[Any, ...]:
    """A result's values for ``_RESULT_COLUMNS``."""
    return (r.region, r.job_id, d.ts(r.checked_at), r.worker, d.json(r.detail),
            *(d.boolean(v) if isinstance(v, bool) else v for v in (getattr(r, key) for key in RESULT_KEYS)))


class Results:
    """The store's methods that write results (:class:`db.Store` is made of one such part
    per table)."""

    dialect: Dialect
    mark_running: Callable[..., None]  # db.jobs.Jobs', beside this part in db.Store

    def store_results(self, records: Sequence[ResultRecord], *, started: Sequence[int] = (),
                      now: datetime | None = None) -> int:
        """Store results and mark their jobs done, in one transaction; jobs in ``started``
        are marked running in the same transaction (one commit for both).

        A job that named no region has one result, in ``results`` (its region: the default
        one), exactly as before regions. A job that named regions gets one row per region
        in ``region_results``, and its quorum is decided here, under the job's row lock:
        the region result that settles it is copied to ``results`` and the job is done.
        Idempotent: a job (or a job's region) that already has a result keeps its first
        one, so a redelivered message never makes a second row. Returns how many results
        were new.
        """
        d = self.dialect
        if started and not records:
            self.mark_running(started, now=now)
            return 0
        if not records:
            return 0
        ids = sorted({r.job_id for r in records})
        test, id_params = d.any_of("id", ids)
        with d.transaction(announce=True) as cur:
            d.lock_jobs(cur, [*ids, *started])
            if started:
                run_test, run_params = d.any_of("id", started)
                cur.execute(f"UPDATE jobs SET state = 'running', started_at = %s WHERE state <> 'done' AND {run_test}",
                            [d.ts(now or utcnow()), *run_params])
            # Only jobs that still exist (a pruned job's late result is dropped).
            cur.execute(f"SELECT id, options FROM jobs WHERE {test}", id_params)
            placements = {row[0]: Placement.of(d.parse_json(row[1])) for row in cur.fetchall()}
            plain = [r for r in records if r.job_id in placements and not placements[r.job_id].named]
            named = [r for r in records if r.job_id in placements and placements[r.job_id].named]
            new = 0
            if plain:
                new += len(self._insert_new(cur, "results", "job_id", plain))
                done_test, done_params = d.any_of("id", sorted({r.job_id for r in plain}))
                cur.execute(f"UPDATE jobs SET state = 'done' WHERE {done_test}", done_params)
            if named:
                fresh = self._insert_new(cur, "region_results", "job_id, region", named)
                new += len(fresh)
                if fresh:
                    self._decide(cur, fresh, placements)
        return new

    def _insert_new(self, cur: Any, table: str, key: str, records: Sequence[ResultRecord]) -> list[ResultRecord]:
        """Insert results into ``table`` (``results`` or ``region_results``), skipping those
        whose ``key`` is already stored; returns the records that were new."""
        d = self.dialect
        head = f"INSERT INTO {table} ({_RESULT_COLUMNS}) VALUES "  # our own names
        tail = f" ON CONFLICT ({key}) DO NOTHING RETURNING job_id, region"
        keys = {(row[0], row[1]) for row in d.insert_returning(cur, head, [_result_row(d, r) for r in records], tail)}
        out: list[ResultRecord] = []
        for r in records:  # a batch may hold a job (or pair) twice: the first one is the new one
            if (r.job_id, r.region) in keys:
                keys.discard((r.job_id, r.region))
                out.append(r)
        return out

    def _decide(self, cur: Any, fresh: Sequence[ResultRecord], placements: dict[int, Placement]) -> None:
        """For jobs that named regions and heard from one: copy the result that settled the
        quorum to ``results`` once, mark the job done, and stop the no-worker sweep once
        every region has reported."""
        d = self.dialect
        job_ids = sorted({r.job_id for r in fresh})
        test, params = d.any_of("job_id", job_ids)
        cur.execute(f"SELECT job_id, region, ok FROM region_results WHERE {test}", params)
        heard: dict[int, dict[str, bool]] = {}
        for job_id, region, ok in cur.fetchall():
            heard.setdefault(job_id, {})[region] = bool(ok)
        cur.execute(f"SELECT job_id FROM results WHERE {test}", params)
        decided = {row[0] for row in cur.fetchall()}
        deciding: list[ResultRecord] = []
        complete: list[int] = []
        for job_id in job_ids:
            placement = placements[job_id]
            regions = placement.regions
            if all(r in heard[job_id] for r in regions):
                complete.append(job_id)
            if job_id in decided:
                continue
            # Replay this batch's results in order: the one that settled the quorum decides.
            mine = [r for r in fresh if r.job_id == job_id]
            so_far = {k: v for k, v in heard[job_id].items() if all(r.region != k for r in mine)}
            for record in mine:
                so_far[record.region] = record.ok
                if decide(placement.quorum, regions, so_far) is not None:
                    deciding.append(record)
                    break
        if deciding:
            self._insert_new(cur, "results", "job_id", deciding)
            done_test, done_params = d.any_of("id", [r.job_id for r in deciding])
            cur.execute(f"UPDATE jobs SET state = 'done' WHERE {done_test}", done_params)
        if complete:
            full_test, full_params = d.any_of("id", complete)
            cur.execute(f"UPDATE jobs SET no_worker_at = NULL WHERE no_worker_at IS NOT NULL AND {full_test}",
                        full_params)

    def done_ids(self, ids: Sequence[int], *, region: str | None = None) -> set[int]:
        """Which of these jobs already have a result (so a redelivery can skip them); with
        ``region``, which of these jobs that named regions have that region's result."""
        if not ids:
            return set()
        test, params = self.dialect.any_of("job_id", ids)
        table = "results"
        if region is not None:
            table = "region_results"
            test, params = f"region = %s AND {test}", [region, *params]
        with self.dialect.transaction(write=False) as cur:
            cur.execute(f"SELECT job_id FROM {table} WHERE {test}", params)  # our own names
            return {row[0] for row in cur.fetchall()}
