"""Storing results (the ``results`` and ``region_results`` tables), for the store: exactly
one per job and region, whatever is redelivered, and the quorum of a job that named regions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from types import NoneType
from typing import Any, get_args

from runner.fields import RESULT_KEYS, RESULT_TYPES

from .alerts import queue_alerts
from .dialects import Dialect
from .history import JobRow, record_states
from .models import Change, ResultRecord, utcnow
from .regions import Placement, decide
from .states import state_is, taken_back

# The columns of results and region_results: the result's fields (runner.fields), each in
# a column of its name, and where, when and by whom it was checked, and all of it as JSON.
_RESULT_COLUMNS = ", ".join(("region", "job_id", "checked_at", "worker", "detail", *RESULT_KEYS))
# Their PostgreSQL types (the rows travel as one JSON parameter there: db/jsonrows.py).
_SQL_TYPES = {str: "text", bool: "boolean", int: "bigint", float: "double precision"}
_RESULT_TYPES = ("text", "bigint", "timestamptz", "text", "jsonb",
                 *(_SQL_TYPES[next(t for t in get_args(RESULT_TYPES[key]) if t is not NoneType)]
                   for key in RESULT_KEYS))


def _result_row(d: Dialect, r: ResultRecord) -> tuple[Any, ...]:
    """A result's values for ``_RESULT_COLUMNS``."""
    return (r.region, r.job_id, d.ts(r.checked_at), r.worker, d.json(r.detail),
            *(d.boolean(v) if isinstance(v, bool) else v for v in (getattr(r, key) for key in RESULT_KEYS)))


# A job's result is in: done, and when its check began if this batch says so (None: as it was).
_DONE = (("state", "text"), ("started_at?", "timestamptz"))


class Results:
    """The store's methods that write results (:class:`db.Store` is made of one such part
    per table)."""

    dialect: Dialect
    mark_running: Callable[..., None]  # db.jobs.Jobs', beside this part in db.Store

    def store_results(self, records: Sequence[ResultRecord], *,
                      started: Sequence[tuple[int, datetime]] = ()) -> int:
        """Store results and mark their jobs done, in one transaction; ``started`` (``(job
        id, when its check began)`` pairs) are marked running in the same transaction (one
        commit for both).

        A job that named no region has one result, in ``results`` (its region: the default
        one), exactly as before regions. A job that named regions gets one row per region
        in ``region_results``, and its quorum is decided here, under the job's row lock:
        the region result that settles it is copied to ``results`` and the job is done.
        Idempotent: a job (or a job's region) that already has a result keeps its first
        one, so a redelivered message never makes a second row. Returns how many results
        were new.

        Each new row of ``results`` (a job's result, or its quorum's) moves its URL's state
        in this same transaction (:mod:`db.history`), so a redelivery, which adds no row,
        moves nothing; the changes it makes are handed to :meth:`_on_changes`.
        """
        d = self.dialect
        if started and not records:
            self.mark_running(started)
            return 0
        if not records:
            return 0
        ids = sorted({r.job_id for r in records})
        test, id_params = d.any_of("id", ids)
        with d.transaction(announce=True) as cur:
            d.lock_jobs(cur, [*ids, *(job_id for job_id, _ in started)])
            d.share_batches(cur, [*ids, *(job_id for job_id, _ in started)])
            # Only jobs that still exist (a pruned job's late result is dropped) and were not
            # cancelled while their check ran (its result is dropped: the job stays cancelled).
            cur.execute("SELECT id, options, url_id, url, batch_id, state FROM jobs WHERE state <> 'cancelled' AND "
                        f"NOT {taken_back('jobs')} AND {test}", id_params)
            placements: dict[int, Placement] = {}
            jobs: dict[int, JobRow] = {}
            for job_id, options, url_id, url, batch_id, state in cur.fetchall():
                parsed = d.parse_json(options) or {}
                placements[job_id] = Placement.of(parsed)
                jobs[job_id] = JobRow(url_id, url, batch_id, state, parsed, placements[job_id].named)
            plain = [r for r in records if r.job_id in placements and not placements[r.job_id].named]
            named = [r for r in records if r.job_id in placements and placements[r.job_id].named]
            # A job started and done in this batch is written once: done, with when it
            # started (as running then done would be, but one row version, not two).
            done = sorted({r.job_id for r in plain})
            began = dict(started)
            finished = set(done)
            running = [(job_id, at) for job_id, at in started if job_id not in finished]
            if running:
                d.mark_running(cur, running)
            new = 0
            decided: list[ResultRecord] = []
            regional: list[ResultRecord] = []
            if plain:
                decided = self._insert_new(cur, "results", "job_id", plain)
                new += len(decided)
                d.update_rows(cur, "jobs", _DONE, [
                    (job_id, "done", d.ts(began.get(job_id) if jobs[job_id].state in ("queued", "running") else None))
                    for job_id in done])
            if named:
                fresh = regional = self._insert_new(cur, "region_results", "job_id, region", named)
                new += len(fresh)
                if fresh:
                    decided += self._decide(cur, fresh, placements)
            if decided or regional:
                changes = record_states(d, cur, decided, regional, jobs, utcnow())
                if changes:
                    self._on_changes(cur, changes)
        return new

    def _on_changes(self, cur: Any, changes: Sequence[Change]) -> None:
        """Alerts hook: the alert outbox is written here, in the same transaction.

        Called once per result transaction that changed some URL's state, after the
        changes are in ``url_changes``, with ``cur`` still inside that transaction (so an
        outbox row commits with its result, or not at all).
        """
        queue_alerts(cur, self.dialect, changes)

    def _insert_new(self, cur: Any, table: str, key: str, records: Sequence[ResultRecord]) -> list[ResultRecord]:
        """Insert results into ``table`` (``results`` or ``region_results``), skipping those
        whose ``key`` is already stored; returns the records that were new."""
        d = self.dialect
        head = f"INSERT INTO {table} ({_RESULT_COLUMNS}) VALUES "  # our own names
        tail = f" ON CONFLICT ({key}) DO NOTHING RETURNING job_id, region"
        keys = {(row[0], row[1]) for row in d.insert_returning(cur, head, [_result_row(d, r) for r in records], tail,
                                                                   _RESULT_TYPES)}
        out: list[ResultRecord] = []
        for r in records:  # a batch may hold a job (or pair) twice: the first one is the new one
            if (r.job_id, r.region) in keys:
                keys.discard((r.job_id, r.region))
                out.append(r)
        return out

    def _decide(self, cur: Any, fresh: Sequence[ResultRecord], placements: dict[int, Placement]) -> list[ResultRecord]:
        """For jobs that named regions and heard from one: copy the result that settled the
        quorum to ``results`` once, mark the job done, and stop the no-worker sweep once
        every region has reported. Returns the results copied (the quorums decided now)."""
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
        copied: list[ResultRecord] = []
        if deciding:
            copied = self._insert_new(cur, "results", "job_id", deciding)
            done_test, done_params = d.any_of("id", [r.job_id for r in deciding])
            cur.execute(f"UPDATE jobs SET state = 'done' WHERE {done_test}", done_params)
        if complete:
            full_test, full_params = d.any_of("id", complete)
            cur.execute(f"UPDATE jobs SET no_worker_at = NULL WHERE no_worker_at IS NOT NULL AND {full_test}",
                        full_params)
        return copied

    def skip_ids(self, ids: Sequence[int], *, region: str | None = None) -> set[int]:
        """Which of these jobs a worker drops without checking: those cancelled, and those
        that already have a result (with ``region``: that region's result)."""
        if not ids:
            return set()
        test, params = self.dialect.any_of("j.id", ids)
        if region is None:
            has = "EXISTS (SELECT 1 FROM results r WHERE r.job_id = j.id)"
        else:
            has = "EXISTS (SELECT 1 FROM region_results r WHERE r.job_id = j.id AND r.region = %s)"
            params = [region, *params]
        with self.dialect.transaction(write=False) as cur:
            cur.execute(f"SELECT j.id FROM jobs j WHERE ({state_is('cancelled')} OR {has}) AND {test}", params)
            return {row[0] for row in cur.fetchall()}

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
