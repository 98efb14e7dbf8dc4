"""The store: every read and write of jobs, results, batches and worker heartbeats.

All SQL of the project lives in this package, with values passed as parameters. The
same methods serve PostgreSQL and SQLite. Methods return plain dataclasses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from . import migrations
from .dialects import NOTIFY_CHANNEL, Dialect, Postgres, Sqlite, open_dialect
from .limits import LimitStore
from .models import (
    ORDERS,
    Batch,
    Counts,
    JobFilter,
    JobView,
    NewJob,
    ResultRecord,
    WorkerBeat,
)
from .regions import Placement, decide

COPY_FROM = 100  # jobs in one insert from which COPY beats INSERT on PostgreSQL

_JOB_COLUMNS = (
    "j.id, j.url, b.name, j.batch_id, j.state, j.options, j.submitted_at, j.published_at, "
    "j.publish_error, j.started_at, r.checked_at, r.outcome, r.ok, r.status_code, r.total_ms, "
    "r.attempts, r.error, r.final_url, r.bytes, r.content_type, r.title"
)
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
    states = {"queued": 0, "running": 0, "done": 0}
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


_RESULT_COLUMNS = (
    "job_id, outcome, ok, status_code, total_ms, attempts, error, final_url, bytes, "
    "content_type, title, checked_at, worker, detail"
)


def _result_row(d: Dialect, r: ResultRecord) -> tuple[Any, ...]:
    """A result's values for ``(region, _RESULT_COLUMNS)``."""
    ok: Any = r.ok if isinstance(d, Postgres) else int(r.ok)
    return (r.region, r.job_id, r.outcome, ok, r.status_code, r.total_ms, r.attempts, r.error, r.final_url,
            r.bytes, r.content_type, r.title, d.ts(r.checked_at), r.worker, d.json(r.detail))


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """Jobs, results, batches and heartbeats in one database.

    Thread-safe: each call takes a connection from the dialect's pool for one transaction.
    Raises :class:`db.errors.StoreUnavailable` when the database cannot be reached; nothing
    was written then, and the caller may retry the call.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._limits: LimitStore | None = None

    @property
    def kind(self) -> str:
        return self.dialect.name

    @property
    def url(self) -> str:
        return self.dialect.url

    def close(self) -> None:
        if self._limits is not None:
            self._limits.close()
        self.dialect.close()

    @property
    def limits(self) -> LimitStore:
        """Per-host limits and pacing (:mod:`db.limits`), with connections of its own."""
        if self._limits is None:
            self._limits = LimitStore(self.dialect)
        return self._limits

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        if not isinstance(self.dialect, Postgres):
            version = self._sqlite_version()
            if version is not None:
                return version
        with self.dialect.transaction() as cur:
            return self._schema_version(cur)

    def _sqlite_version(self) -> int | None:
        """The schema version read without SQLite's write lock (None: no schema yet)."""
        with self.dialect.transaction(write=False) as cur:
            cur.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT max(version) FROM schema_version")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _schema_version(self, cur: Any) -> int:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cur.execute("SELECT max(version) FROM schema_version")
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def latest_version(self) -> int:
        return max(version for version, _ in self._migrations())

    def pending_versions(self) -> list[int]:
        """Migrations not applied yet (versions may land out of order, so not only those
        above the highest applied)."""
        done: set[int] = set()
        if isinstance(self.dialect, Postgres):
            with self.dialect.transaction() as cur:
                self._schema_version(cur)
                cur.execute("SELECT version FROM schema_version")
                done = {int(row[0]) for row in cur.fetchall()}
        else:  # read without SQLite's write lock (another process may hold it)
            with self.dialect.transaction(write=False) as cur:
                cur.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
                if cur.fetchone()[0]:
                    cur.execute("SELECT version FROM schema_version")
                    done = {int(row[0]) for row in cur.fetchall()}
        return sorted(v for v, _ in self._migrations() if v not in done)

    def _migrations(self) -> list[tuple[int, list[str]]]:
        return migrations.POSTGRES if isinstance(self.dialect, Postgres) else migrations.SQLITE

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied. Safe to run concurrently."""
        applied: list[int] = []
        if not isinstance(self.dialect, Postgres) and not self.pending_versions():
            return applied  # up to date: no write lock (another process may hold it)
        with self.dialect.transaction() as cur:
            if isinstance(self.dialect, Postgres):
                # Several workers may start at once: one migrates, the others wait here.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (0x75726C74,))
            self._schema_version(cur)
            cur.execute("SELECT version FROM schema_version")
            done = {int(row[0]) for row in cur.fetchall()}
            # Every version not applied yet, not only those above the highest: versions are
            # numbered by issue and may land out of order (4 before 2 and 3).
            for version, statements in sorted(self._migrations()):
                if version in done:
                    continue
                for statement in statements:
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                applied.append(version)
        return applied

    # ------------------------------------------------------------------ submit

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
            cur.execute(
                "INSERT INTO batches (name, idempotency_key, created_at) VALUES (%s, %s, %s) RETURNING id",
                (name, idempotency_key, d.ts(now)),
            )
            batch_id = cur.fetchone()[0]
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
        now = now or utcnow()
        with d.transaction() as cur:
            if isinstance(d, Postgres) and len(jobs) >= COPY_FROM:
                ids = d.copy_jobs(cur, batch_id, [(job.url, job.options_json()) for job in jobs], now)
            elif isinstance(d, Postgres):
                rows = [(batch_id, job.url, job.options_json(), "queued", now) for job in jobs]
                ids = [r[0] for r in d.execute_values(
                    cur, "INSERT INTO jobs (batch_id, url, options, state, submitted_at) VALUES %s RETURNING id",
                    rows, fetch=True, template="(%s, %s, %s::jsonb, %s, %s)")]
            else:
                ids = []
                now_v = d.ts(now)
                for job in jobs:
                    cur.execute(
                        "INSERT INTO jobs (batch_id, url, options, state, submitted_at) VALUES (%s, %s, %s, %s, %s)",
                        (batch_id, job.url, job.options_json(), "queued", now_v),
                    )
                    ids.append(cur.lastrowid)
            if batch_id is not None:
                cur.execute("UPDATE batches SET size = size + %s WHERE id = %s", (len(ids), batch_id))
            self._notify(cur)
        self._after_write()
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
        with self.dialect.transaction() as cur:
            self.dialect.lock_jobs(cur, ids)
            cur.execute(sql.format(test), [*params, *id_params])
            self._notify(cur)
        self._after_write()

    # ------------------------------------------------------------------ results

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
        with d.transaction() as cur:
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
            self._notify(cur)
        self._after_write()
        return new

    def _insert_new(self, cur: Any, table: str, key: str, records: Sequence[ResultRecord]) -> list[ResultRecord]:
        """Insert results into ``table`` (``results`` or ``region_results``), skipping those
        whose ``key`` is already stored; returns the records that were new."""
        d = self.dialect
        rows = [_result_row(d, r) for r in records]
        sql = f"INSERT INTO {table} (region, {_RESULT_COLUMNS}) VALUES "  # noqa: S608 - our own names
        conflict = f" ON CONFLICT ({key}) DO NOTHING RETURNING job_id, region"
        if isinstance(d, Postgres):
            new = d.execute_values(cur, sql + "%s" + conflict, rows, fetch=True)
            keys = {(row[0], row[1]) for row in new}
        else:
            keys = set()
            for row in rows:
                found = cur.execute(sql + f"({','.join('%s' for _ in row)})" + conflict, row).fetchone()
                if found:
                    keys.add((found[0], found[1]))
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
            cur.execute(f"SELECT job_id FROM {table} WHERE {test}", params)  # noqa: S608 - our own names
            return {row[0] for row in cur.fetchall()}

    # ------------------------------------------------------------------ reading

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
        order_sql = ", ".join(f"{k} {direction}" for k in keys)
        columns = _JOB_COLUMNS + (", r.detail" if detail else "")
        join = _FROM.replace("LEFT JOIN results", "JOIN results") if needs_result else _FROM
        sql = f"SELECT {columns} {join} WHERE {' AND '.join(where) or 'TRUE'} ORDER BY {order_sql} LIMIT %s OFFSET %s"  # noqa: S608 - only our own fragments
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
            cur.execute(f"SELECT count(*) {_FROM} WHERE {' AND '.join(where) or 'TRUE'}", params)  # noqa: S608
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
                f"SELECT {_JOB_COLUMNS} {_FROM} WHERE j.state = 'queued' AND j.published_at IS NULL "  # noqa: S608
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
            where.append("j.state = %s")
            params.append(flt.state)
        if flt.outcome:
            where.append("r.outcome = %s")
            params.append(flt.outcome)
        if flt.failed:
            where.append("r.ok = %s")
            params.append(False if isinstance(d, Postgres) else 0)
        if flt.batch:
            if flt.batch.isdigit():
                where.append("(b.name = %s OR j.batch_id = %s)")
                params.extend([flt.batch, int(flt.batch)])
            else:
                where.append("b.name = %s")
                params.append(flt.batch)
        if flt.since is not None:
            where.append("j.submitted_at >= %s")
            params.append(d.ts(flt.since))
        if flt.text:
            escaped = flt.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            op = "ILIKE" if isinstance(d, Postgres) else "LIKE"
            where.append(f"j.url {op} %s ESCAPE '\\'")
            params.append(f"%{escaped}%")
        if needs_result:
            where.append("r.job_id IS NOT NULL")
        return where, params

    def _view(self, row: Sequence[Any], detail: bool) -> JobView:
        d = self.dialect
        ok = row[12]
        return JobView(
            id=row[0], url=row[1], batch=row[2], batch_id=row[3], state=row[4],
            options=d.parse_json(row[5]) or {}, submitted_at=d.parse_ts(row[6]),
            published_at=d.parse_ts(row[7]), publish_error=row[8], started_at=d.parse_ts(row[9]),
            checked_at=d.parse_ts(row[10]), outcome=row[11], ok=None if ok is None else bool(ok),
            status_code=row[13], total_ms=row[14], attempts=row[15], error=row[16], final_url=row[17],
            bytes=row[18], content_type=row[19], title=row[20],
            detail=(d.parse_json(row[21]) if detail else None),
        )

    # ------------------------------------------------------------------ status

    def counts(self, *, now: datetime | None = None) -> Counts:
        d = self.dialect
        now = now or utcnow()
        with d.transaction(write=False) as cur:
            cur.execute(
                "SELECT j.state, r.outcome, r.ok, count(*), "
                "sum(CASE WHEN j.published_at IS NULL AND j.state = 'queued' THEN 1 ELSE 0 END) "
                "FROM jobs j LEFT JOIN results r ON r.job_id = j.id GROUP BY j.state, r.outcome, r.ok"
            )
            rows = cur.fetchall()
            cur.execute("SELECT count(*) FROM results WHERE checked_at >= %s", (d.ts(now - timedelta(minutes=1)),))
            last_minute = int(cur.fetchone()[0])
        states, by_outcome, ok, failed = tally(row[:4] for row in rows)
        unpublished = sum(int(row[4] or 0) for row in rows)
        return Counts(
            queued=states["queued"], running=states["running"], done=states["done"], ok=ok, failed=failed,
            unpublished=unpublished, by_outcome=by_outcome, done_last_minute=last_minute,
        )

    def heartbeat(self, beat: WorkerBeat) -> None:
        d = self.dialect
        with d.transaction() as cur:
            cur.execute(
                "INSERT INTO workers (id, host, pid, queue, concurrency, processed, started_at, last_seen, region, "
                "concurrency_max) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "processed = excluded.processed, last_seen = excluded.last_seen, concurrency = excluded.concurrency, "
                "concurrency_max = excluded.concurrency_max",
                (beat.id, beat.host, beat.pid, beat.queue, beat.concurrency, beat.processed,
                 d.ts(beat.started_at), d.ts(beat.last_seen), beat.region, beat.concurrency_max),
            )
            # Rows of workers gone for a day are removed here, by a writer, so that reading
            # the list (status, the TUI) never needs SQLite's write lock.
            cur.execute("DELETE FROM workers WHERE last_seen < %s", (d.ts(beat.last_seen - timedelta(days=1, seconds=30)),))

    def forget_worker(self, worker_id: str) -> None:
        with self.dialect.transaction() as cur:
            cur.execute("DELETE FROM workers WHERE id = %s", (worker_id,))

    def workers(self, *, alive_within: timedelta = timedelta(seconds=30), now: datetime | None = None) -> list[WorkerBeat]:
        """Workers whose last heartbeat is recent (heartbeats remove day-old rows)."""
        d = self.dialect
        cutoff = (now or utcnow()) - alive_within
        with d.transaction(write=False) as cur:
            cur.execute(
                "SELECT id, host, pid, queue, concurrency, processed, started_at, last_seen, region, concurrency_max FROM workers "
                "WHERE last_seen >= %s ORDER BY host, pid",
                (d.ts(cutoff),),
            )
            rows = cur.fetchall()
        return [
            WorkerBeat(r[0], r[1], r[2], r[3], r[4], r[5], d.parse_ts(r[6]), d.parse_ts(r[7]), region=r[8],
                       concurrency_max=r[9]) for r in rows
        ]

    # ------------------------------------------------------------------ housekeeping

    def stale_jobs(self, older_than: timedelta, *, now: datetime | None = None, limit: int = 1000,
                   after_id: int = 0) -> list[JobView]:
        """Jobs not done (or with a named region still to report) whose message was
        published (or attempted) before the cutoff."""
        d = self.dialect
        cutoff = d.ts((now or utcnow()) - older_than)
        # A job that named regions may be done (its quorum settled) with a region still to
        # report: ``no_worker_at`` is set until every region has, so it is found too.
        where = (
            "(j.state <> 'done' OR j.no_worker_at IS NOT NULL) AND j.id > %s AND "
            "COALESCE(j.started_at, j.published_at, j.submitted_at) < %s"
        )
        with d.transaction(write=False) as cur:
            cur.execute(
                f"SELECT {_JOB_COLUMNS} {_FROM} WHERE {where} ORDER BY j.id LIMIT %s",  # noqa: S608
                (after_id, cutoff, limit),
            )
            rows = cur.fetchall()
        return [self._view(r, False) for r in rows]

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

    # ------------------------------------------------------------------ change feed

    def listener(self) -> Any:
        """An object whose ``wait(timeout)`` returns True when jobs or results changed."""
        return self.dialect.listen()  # type: ignore[attr-defined]

    def _notify(self, cur: Any) -> None:
        if isinstance(self.dialect, Postgres):
            cur.execute(f"NOTIFY {NOTIFY_CHANNEL}")

    def _after_write(self) -> None:
        if isinstance(self.dialect, Sqlite):
            self.dialect.notify()


def open_store(url: str, *, max_connections: int = 8, migrate: bool = True) -> Store:
    """A store for a database URL (``postgresql://…`` or ``sqlite:///path``).

    With ``migrate`` the schema is brought up to date (safe with concurrent starters).
    """
    store = Store(open_dialect(url, max_connections=max_connections))
    if migrate:
        store.migrate()
    return store

