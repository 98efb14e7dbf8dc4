"""A URL's state and its changes (the ``urls`` and ``url_changes`` tables), moved by each
result in the transaction that records it (db/results.py).

A URL's state is ``ok``, ``slow`` (passed, slower than ``slow_ms``), ``failing`` or
``pending`` (never checked). It changes after ``fail_after`` consecutive failures (into
failing) or ``recover_after`` consecutive passes (out of it); ok and slow swap at once,
since neither is a failure. From pending, the first check decides (a URL with no standing
has none to protect). :func:`advance` is that rule, pure, so a property test can replay it.

Concurrency: the URL rows are locked (``SELECT … FOR UPDATE`` in id order, after the
jobs' row locks, which every writer takes first) before their counters move, so two
workers recording results of one URL at once serialise on it and neither loses a change
or counts a check twice. SQLite has one writer: its transaction is the lock. Idempotence
comes from the caller: only results that were new (not a redelivery) move a state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .dialects import Dialect
from .models import Change, ResultRecord, utcnow
from .rollups import OVERALL, Point, add_points


@dataclass(frozen=True)
class StateRule:
    """The options that define a URL's state (a job's ``slow_ms``, ``fail_after``,
    ``recover_after``; the latest job's are stored with the URL)."""

    slow_ms: float | None = None
    fail_after: int = 1
    recover_after: int = 1

    @classmethod
    def of(cls, options: Mapping[str, Any] | None) -> StateRule:
        options = options or {}
        slow = options.get("slow_ms")
        return cls(slow_ms=float(slow) if slow is not None else None,
                   fail_after=int(options.get("fail_after") or 1),
                   recover_after=int(options.get("recover_after") or 1))


def seen(ok: bool, total_ms: float | None, rule: StateRule) -> str:
    """What one check says on its own: ok, slow or failing."""
    if not ok:
        return "failing"
    if rule.slow_ms is not None and total_ms is not None and total_ms > rule.slow_ms:
        return "slow"
    return "ok"


def advance(state: str, fails: int, passes: int, ok: bool, total_ms: float | None,
            rule: StateRule) -> tuple[str, int, int, str | None]:
    """One check on a URL in ``state`` with these consecutive counts: its new state, the new
    counts, and the change recorded (None: no change)."""
    fails, passes = (0, passes + 1) if ok else (fails + 1, 0)
    now = seen(ok, total_ms, rule)
    if state == "pending":
        return now, fails, passes, "new"
    if state == "failing":
        if ok and passes >= rule.recover_after:
            return now, fails, passes, "recovered"
        return state, fails, passes, None
    if not ok:
        if fails >= rule.fail_after:
            return "failing", fails, passes, "new_failure"
        return state, fails, passes, None
    if now != state:
        return now, fails, passes, "slower" if now == "slow" else "recovered"
    return state, fails, passes, None


@dataclass(frozen=True)
class JobRow:
    """What the result's transaction reads of a job to move its URL's state."""

    url_id: int | None
    url: str
    batch_id: int | None
    state: str
    options: Mapping[str, Any]
    named: bool  # the job named regions: its results row is the quorum's


def record_states(d: Dialect, cur: Any, decided: Sequence[ResultRecord], regional: Sequence[ResultRecord],
                  jobs: Mapping[int, JobRow], now: Any) -> list[Change]:
    """Move the state of each URL that ``decided`` (new rows of ``results``, in the order
    recorded) checked, record the changes in ``url_changes``, add every new history point
    (``decided`` under region ``''``, and the new ``regional`` results of jobs that named
    regions under their region) to the URL's rollups, and return the changes.

    Jobs cancelled never count. Jobs made before issue 21 (no ``url_id``) get their URL's
    row here.
    """
    counted = [r for r in decided if r.job_id in jobs and jobs[r.job_id].state != "cancelled"]
    points = [r for r in regional if r.job_id in jobs and jobs[r.job_id].state != "cancelled"]
    if not counted and not points:
        return []
    missing = sorted({jobs[r.job_id].url for r in (*counted, *points) if jobs[r.job_id].url_id is None})
    ids_by_url = d.upsert_urls(cur, missing, now) if missing else {}
    for job_id, job in jobs.items():
        if job.url_id is None and job.url in ids_by_url:
            cur.execute("UPDATE jobs SET url_id = %s WHERE id = %s", (ids_by_url[job.url], job_id))

    def url_of(record: ResultRecord) -> int:
        job = jobs[record.job_id]
        return job.url_id if job.url_id is not None else ids_by_url[job.url]

    url_ids = sorted({url_of(r) for r in (*counted, *points)})
    test, params = d.any_of("id", url_ids)
    cur.execute(f"SELECT id, url, state, fails, passes FROM urls WHERE {test} ORDER BY id{d.for_update}",
                params)
    rows = {row[0]: _UrlRow(row[1], row[2], int(row[3]), int(row[4])) for row in cur.fetchall()}
    changes: list[Change] = []
    history: list[Point] = []
    for record in counted:
        job = jobs[record.job_id]
        url_id = url_of(record)
        row = rows[url_id]
        rule = StateRule.of(job.options)
        before = row.state
        row.state, row.fails, row.passes, change = advance(before, row.fails, row.passes, record.ok,
                                                           record.total_ms, rule)
        row.last, row.rule = record, rule
        history.append((url_id, OVERALL, record.checked_at, record.ok, record.outcome, record.total_ms))
        if change is not None:
            row.since = record.checked_at
            changes.append(Change(
                url_id=url_id, url=row.url, change=change, from_state=None if before == "pending" else before,
                to_state=row.state, at=record.checked_at, job_id=record.job_id, batch_id=job.batch_id,
                outcome=record.outcome, status_code=record.status_code, error=record.error,
                region=None if job.named else record.region))
    history.extend((url_of(r), r.region, r.checked_at, r.ok, r.outcome, r.total_ms) for r in points)
    updates = [(url_id, row.state, row.fails, row.passes, row.last.job_id, d.ts(row.last.checked_at),
                row.last.outcome, row.last.status_code, row.last.total_ms, row.last.error, row.rule.slow_ms,
                row.rule.fail_after, row.rule.recover_after, d.ts(row.since))
               for url_id, row in sorted(rows.items())
               if row.last is not None and row.rule is not None]  # else only region points, quorum still open
    if updates:
        d.update_rows(cur, "urls", _URL_SETS, updates)
    if changes:
        d.insert_returning(cur, "INSERT INTO url_changes (url_id, at, from_state, to_state, change, job_id, batch_id, "
                                "outcome, status_code, error, region) VALUES ",
                           [(c.url_id, d.ts(c.at), c.from_state, c.to_state, c.change, c.job_id, c.batch_id,
                             c.outcome, c.status_code, c.error, c.region) for c in changes], "",
                           ("bigint", "timestamptz", "text", "text", "text", "bigint", "bigint", "text", "integer",
                            "text", "text"))
    add_points(d, cur, history)
    return changes


# What a result writes to its URL's row (a None since keeps the row's: the state did not change).
_URL_SETS = (("state", "text"), ("fails", "integer"), ("passes", "integer"), ("last_job_id", "bigint"),
             ("last_checked_at", "timestamptz"), ("last_outcome", "text"), ("last_status_code", "integer"),
             ("last_total_ms", "double precision"), ("last_error", "text"), ("slow_ms", "double precision"),
             ("fail_after", "integer"), ("recover_after", "integer"), ("since?", "timestamptz"))


@dataclass
class _UrlRow:
    """A locked ``urls`` row as the transaction moves it."""

    url: str
    state: str
    fails: int
    passes: int
    since: Any = None
    last: ResultRecord | None = None
    rule: StateRule | None = None


def backfill(store: Any, *, chunk: int = 10000, on_chunk: Any = None, now: Any = None) -> int:
    """Build the URL rows, states, changes and rollups from results stored before issue 21:
    jobs without a ``url_id``, in id order, ``chunk`` jobs per transaction. Resumable: a
    chunk commits whole or not at all, and a re-run skips jobs that have their URL already.
    Returns how many jobs got one. ``on_chunk(done_jobs, last_id, max_id)`` reports progress.

    Run it before new results arrive for those URLs (``runner db upgrade`` does, at once):
    states replay the old results in job order.
    """
    d: Dialect = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute("SELECT min(id), max(id) FROM jobs WHERE url_id IS NULL")
        low, high = cur.fetchone()
    if low is None:
        return 0
    done = 0
    start = int(low)
    while start <= high:
        end = start + chunk
        with d.transaction() as cur:
            cur.execute("SELECT id, url, batch_id, state, options FROM jobs WHERE id >= %s AND id < %s "
                        "AND url_id IS NULL ORDER BY id", (start, end))
            rows = cur.fetchall()
            if rows:
                ids_by_url = d.upsert_urls(cur, [r[1] for r in rows], now or utcnow())
                cur.execute("UPDATE jobs SET url_id = (SELECT u.id FROM urls u WHERE u.url = jobs.url) "
                            "WHERE id >= %s AND id < %s AND url_id IS NULL", (start, end))
                jobs: dict[int, JobRow] = {}
                for job_id, url, batch_id, state, options in rows:
                    parsed = d.parse_json(options) or {}
                    jobs[job_id] = JobRow(ids_by_url[url], url, batch_id, state, parsed, bool(parsed.get("regions")))
                test, params = d.any_of("job_id", [r[0] for r in rows])
                decided = _records(d, cur, "results", test, params)
                named = [r[0] for r in rows if jobs[r[0]].named]
                regional: list[ResultRecord] = []
                if named:
                    named_test, named_params = d.any_of("job_id", named)
                    regional = _records(d, cur, "region_results", named_test, named_params)
                # Past changes are recorded, never alerted: no _on_changes here.
                record_states(d, cur, decided, regional, jobs, now or utcnow())
                done += len(rows)
        if on_chunk is not None:
            on_chunk(done, min(end - 1, high), high)
        start = end
    return done


def _records(d: Dialect, cur: Any, table: str, test: str, params: list[Any]) -> list[ResultRecord]:
    cur.execute(f"SELECT job_id, region, outcome, ok, status_code, total_ms, error, attempts, checked_at "
                f"FROM {table} WHERE {test} ORDER BY job_id, checked_at", params)
    return [ResultRecord(job_id=r[0], region=r[1], outcome=r[2], ok=bool(r[3]), status_code=r[4],
                         total_ms=None if r[5] is None else float(r[5]), error=r[6], attempts=r[7],
                         checked_at=d.parse_ts(r[8])) for r in cur.fetchall()]
