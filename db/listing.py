"""Reading jobs with their results (``jobs`` joined to ``results`` and ``batches``), for the
store: pages in any order by keyset, counts, the jobs to re-publish, and status counts.

Every page costs the same at row 10 as at row 1,000,000: the orders are keysets over
indexed columns, never OFFSET over the whole table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from runner.fields import RESULT_KEYS

from .dialects import Dialect
from .models import ORDERS, Counts, JobFilter, JobView, batch_id_of, utcnow
from .states import job_state, state_is

# A job's columns (its state as users see it: db.states), then its result's fields
# (runner.fields), each from its column in results.
_JOB_COLUMNS = (
    f"j.id, j.url, b.name, j.batch_id, {job_state()}, j.options, j.submitted_at, j.published_at, "
    "j.publish_error, j.started_at, r.checked_at, " + ", ".join(f"r.{key}" for key in RESULT_KEYS)
)
_RESULT_AT = 11  # where the result's fields start in a row of _JOB_COLUMNS
_DETAIL_AT = _RESULT_AT + len(RESULT_KEYS)  # r.detail, when asked for
_FROM = "FROM jobs j LEFT JOIN results r ON r.job_id = j.id LEFT JOIN batches b ON b.id = j.batch_id"

# order name -> (keyset columns, descending?, needs a result row)
_ORDER_SPECS: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "newest": (("j.id",), True, False),
    "oldest": (("j.id",), False, False),
    "latency": (("COALESCE(r.total_ms, 0)", "r.job_id"), True, True),
    "status": (("COALESCE(r.status_code, 0)", "r.job_id"), True, True),
    "checked": (("r.checked_at", "r.job_id"), True, True),
}
assert set(_ORDER_SPECS) == set(ORDERS)


def tally(rows: Iterable[Sequence[Any]]) -> tuple[dict[str, int], dict[str, int], int, int]:
    """Jobs by state, results by outcome, ok and failed, from ``(state, outcome, ok, count)``
    rows of a ``GROUP BY j.state, r.outcome, r.ok`` over jobs joined to results."""
    states = {"queued": 0, "running": 0, "done": 0, "cancelled": 0}
    by_outcome: dict[str, int] = {}
    ok = failed = 0
    for state, outcome, ok_value, n in rows:
        states[state] = states.get(state, 0) + int(n)
        if outcome is not None:
            by_outcome[outcome] = by_outcome.get(outcome, 0) + int(n)
            if ok_value:
                ok += int(n)
            else:
                failed += int(n)
    return states, by_outcome, ok, failed


class Listing:
    """The store's reading methods (:class:`db.Store` is made of one such part per table)."""

    dialect: Dialect

    def get_job(self, job_id: int, *, detail: bool = True) -> JobView | None:
        jobs = self.list_jobs(JobFilter(ids=(job_id,)), limit=1, detail=detail)
        return jobs[0] if jobs else None

    def list_jobs(
        self,
        flt: JobFilter = JobFilter(),
        *,
        order: str = "newest",
        limit: int = 100,
        after: tuple[Any, ...] | None = None,
        before: tuple[Any, ...] | None = None,
        offset: int = 0,
        detail: bool = False,
    ) -> list[JobView]:
        """One page of jobs, filtered and ordered in SQL.

        ``after`` is the keyset of the last row of the previous page (see :meth:`keyset`):
        the next page costs the same at row 10 as at row 1,000,000. ``before`` pages
        backwards (rows returned still in display order).
        """
        if order not in _ORDER_SPECS:
            raise ValueError(f"unknown order {order!r}; one of {', '.join(ORDERS)}")
        keys, desc, needs_result = _ORDER_SPECS[order]
        where, params = self._where(flt, needs_result)
        reverse = before is not None
        cursor = before if reverse else after
        if cursor is not None:
            going_down = desc != reverse
            op = "<" if going_down else ">"
            where.append(f"({', '.join(keys)}) {op} ({', '.join('%s' for _ in keys)})")
            params.extend(self._key_params(order, cursor))
        direction = "DESC" if desc != reverse else "ASC"
        if offset and cursor is None and keys == ("j.id",):
            # An offset by job id (the old protocol's paging): find the id at the offset on
            # the index alone (the joins, unused there, are dropped by the planner), then
            # read the page from it. OFFSET over the joined rows computed every skipped
            # row's joins: 0.6 s at 100,000 on a million jobs.
            op = "<=" if direction == "DESC" else ">="
            where.append(f"j.id {op} (SELECT j.id {_FROM} WHERE {' AND '.join(where) or 'TRUE'} "
                         f"ORDER BY j.id {direction} LIMIT 1 OFFSET %s)")
            params = [*params, *params, offset]
            offset = 0
        order_sql = ", ".join(f"{k} {direction}" for k in keys)
        columns = _JOB_COLUMNS + (", r.detail" if detail else "")
        join = _FROM.replace("LEFT JOIN results", "JOIN results") if needs_result else _FROM
        # only our own fragments
        sql = f"SELECT {columns} {join} WHERE {' AND '.join(where) or 'TRUE'} ORDER BY {order_sql} LIMIT %s OFFSET %s"
        with self.dialect.transaction(write=False) as cur:
            cur.execute(sql, [*params, limit, offset])
            rows = cur.fetchall()
        views = [self._view(row, detail) for row in rows]
        return views[::-1] if reverse else views

    def iter_jobs(self, flt: JobFilter = JobFilter(), *, order: str = "oldest", page: int = 1000,
                  detail: bool = False, limit: int | None = None) -> Iterator[JobView]:
        """Every matching job, read a page at a time (flat memory for a million rows)."""
        after = None
        left = limit
        while left is None or left > 0:
            size = page if left is None else min(page, left)
            rows = self.list_jobs(flt, order=order, limit=size, after=after, detail=detail)
            yield from rows
            if len(rows) < size:
                return
            after = self.keyset(rows[-1], order)
            if left is not None:
                left -= len(rows)

    def count_jobs(self, flt: JobFilter = JobFilter(), *, order: str = "newest",
                   above_id: int | None = None) -> int:
        """How many rows ``list_jobs(flt, order=order)`` pages through (orders by a result's
        field list only jobs that have one). ``above_id`` counts only jobs newer than that id.

        Without a filter it counts one table and skips the joins: the same cost at 10,000
        and 1,000,000 jobs as PostgreSQL's count allows.
        """
        if order not in _ORDER_SPECS:
            raise ValueError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
        needs_result = _ORDER_SPECS[order][2]
        with self.dialect.transaction(write=False) as cur:
            if flt == JobFilter() and above_id is None:
                cur.execute("SELECT count(*) FROM results" if needs_result else "SELECT count(*) FROM jobs")
                return int(cur.fetchone()[0])
            where, params = self._where(flt, needs_result)
            if above_id is not None:
                where.append("j.id > %s")
                params.append(above_id)
            cur.execute(f"SELECT count(*) {_FROM} WHERE {' AND '.join(where) or 'TRUE'}", params)
            return int(cur.fetchone()[0])

    def unsent_jobs(self, *, batch_id: int | None = None, after_id: int = 0, limit: int = 5000) -> list[JobView]:
        """Queued jobs whose message the broker never confirmed, oldest first.

        Without ``batch_id``: those whose publish failed (the TUI sends them when the broker
        is back). With it: every job of that batch not confirmed, failed or never tried (a
        retried import publishes them, so a run that died between recording and publishing
        heals itself without waiting for ``requeue --stale``).
        """
        where = "j.batch_id = %s" if batch_id is not None else "j.publish_error IS NOT NULL"
        params: list[Any] = [batch_id] if batch_id is not None else []
        with self.dialect.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {_JOB_COLUMNS} {_FROM} WHERE {state_is('queued')} AND j.published_at IS NULL "
                f"AND {where} AND j.id > %s ORDER BY j.id LIMIT %s",
                (*params, after_id, limit),
            )
            rows = cur.fetchall()
        return [self._view(r, False) for r in rows]

    @staticmethod
    def keyset(view: JobView, order: str) -> tuple[Any, ...]:
        """The keyset of a row for ``after``/``before`` in :meth:`list_jobs`."""
        return {
            "newest": (view.id,),
            "oldest": (view.id,),
            "latency": (view.total_ms or 0, view.id),
            "status": (view.status_code or 0, view.id),
            "checked": (view.checked_at, view.id),
        }[order]

    def _key_params(self, order: str, cursor: tuple[Any, ...]) -> list[Any]:
        if order == "checked":
            return [self.dialect.ts(cursor[0]), cursor[1]]
        return list(cursor)

    def _where(self, flt: JobFilter, needs_result: bool) -> tuple[list[str], list[Any]]:
        d = self.dialect
        where: list[str] = []
        params: list[Any] = []
        if flt.ids is not None:
            test, p = d.any_of("j.id", flt.ids)
            where.append(test)
            params.extend(p)
        if flt.state:
            where.append(state_is(flt.state))
        if flt.outcome:
            where.append("r.outcome = %s")
            params.append(flt.outcome)
        if flt.failed:
            where.append("r.ok = %s")
            params.append(d.boolean(False))
        if flt.batch:
            if (as_id := batch_id_of(flt.batch)) is not None:
                where.append("(b.name = %s OR j.batch_id = %s)")
                params.extend([flt.batch, as_id])
            else:
                where.append("b.name = %s")
                params.append(flt.batch)
        if flt.since is not None:
            where.append("j.submitted_at >= %s")
            params.append(d.ts(flt.since))
        if flt.url is not None:
            where.append("j.url = %s")
            params.append(flt.url)
        if flt.text:
            test, pattern = d.contains("j.url", flt.text)
            where.append(test)
            params.append(pattern)
        if needs_result:
            where.append("r.job_id IS NOT NULL")
        return where, params

    def _view(self, row: Sequence[Any], detail: bool) -> JobView:
        d = self.dialect
        result = dict(zip(RESULT_KEYS, row[_RESULT_AT:_DETAIL_AT], strict=True))
        if result["ok"] is not None:
            result["ok"] = bool(result["ok"])  # SQLite's 0 or 1
        return JobView(
            id=row[0], url=row[1], batch=row[2], batch_id=row[3], state=row[4],
            options=d.parse_json(row[5]) or {}, submitted_at=d.parse_ts(row[6]),
            published_at=d.parse_ts(row[7]), publish_error=row[8], started_at=d.parse_ts(row[9]),
            checked_at=d.parse_ts(row[10]), **result,
            detail=(d.parse_json(row[_DETAIL_AT]) if detail else None),
        )

    def stale_jobs(self, older_than: timedelta, *, now: datetime | None = None, limit: int = 1000,
                   after_id: int = 0) -> list[JobView]:
        """Jobs queued or running (or done with a named region still to report; never a
        cancelled one) whose message was
        published (or attempted) before the cutoff."""
        d = self.dialect
        cutoff = d.ts((now or utcnow()) - older_than)
        # A job that named regions may be done (its quorum settled) with a region still to
        # report: ``no_worker_at`` is set until every region has, so it is found too.
        where = (
            f"({state_is('queued')} OR j.state = 'running' OR (j.state = 'done' AND j.no_worker_at IS NOT NULL)) "
            "AND j.id > %s AND "
            "COALESCE(j.started_at, j.published_at, j.submitted_at) < %s"
        )
        with d.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {_JOB_COLUMNS} {_FROM} WHERE {where} ORDER BY j.id LIMIT %s",
                (after_id, cutoff, limit),
            )
            rows = cur.fetchall()
        return [self._view(r, False) for r in rows]

    def counts(self, *, now: datetime | None = None) -> Counts:
        d = self.dialect
        now = now or utcnow()
        with d.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {job_state()} AS st, r.outcome, r.ok, count(*), "
                f"sum(CASE WHEN j.published_at IS NULL AND {state_is('queued')} THEN 1 ELSE 0 END) "
                "FROM jobs j LEFT JOIN results r ON r.job_id = j.id GROUP BY st, r.outcome, r.ok"
            )
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM results WHERE checked_at >= %s", (d.ts(now - timedelta(minutes=1)),))
            last_minute = int(cur.fetchone()[0])
        states, by_outcome, ok, failed = tally(row[:4] for row in rows)
        unpublished = sum(int(row[4] or 0) for row in rows)
        return Counts(
            queued=states["queued"], running=states["running"], done=states["done"], cancelled=states["cancelled"],
            ok=ok, failed=failed,
            unpublished=unpublished, by_outcome=by_outcome, done_last_minute=last_minute,
        )
