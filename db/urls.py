"""Reading URLs back (``urls``, ``url_changes``, ``url_rollups``, and results through
``jobs.url_id``): one row per URL, one URL's story, and what changed between two runs.

Window figures (checks, ok, percentiles) come from the rollups (db/rollups.py), so they
outlive pruned results; ``recent`` checks come from the results still stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from .models import Change, batch_id_of
from .rollups import OVERALL, Rollup, floor_to, percentile, window
from .store import Store

SORTS = ("state", "url", "latency", "since")
# Each order is an index's (db/migrations), so the first page costs the same at 100 and
# at 1,000,000 URLs; "state" is one such query per state, failing first.
STATE_ORDER = ("failing", "slow", "ok", "pending")
_ORDER = {
    "state": "u.since DESC, u.id DESC",
    "url": "u.url",
    "latency": "COALESCE(u.last_total_ms, -1) DESC, u.id DESC",
    "since": "u.since DESC, u.id DESC",
}


@dataclass(frozen=True)
class UrlFilter:
    state: str | None = None
    changed_since: datetime | None = None
    batch_ids: tuple[int, ...] | None = None  # URLs with a job in one of these batches
    text: str | None = None  # substring of the URL
    url: str | None = None  # exactly this (normalised) URL
    url_id: int | None = None  # exactly the URL of this id (the page's handle: it knows only masked URLs)
    # What the URL's last check in batch ``change_batch`` did to it: new_failure, recovered
    # or still_failing (failing before and after: a check in the batch, no change in it).
    change: str | None = None
    change_batch: int | None = None


@dataclass(frozen=True)
class UrlView:
    """A URL with its state, its latest check, and its figures in a window."""

    id: int
    url: str
    state: str
    since: datetime | None
    last_checked_at: datetime | None
    last_job_id: int | None
    last_outcome: str | None
    last_status_code: int | None
    last_total_ms: float | None
    last_error: str | None
    last_title: str | None = None  # the latest result's <title> (None once that result is pruned)
    window: Rollup = field(default_factory=Rollup)

    @property
    def uptime(self) -> float | None:
        return None if not self.window.checks else self.window.ok / self.window.checks

    def latency(self, q: float) -> float | None:
        return percentile(self.window.hist, q)


@dataclass(frozen=True)
class Point:
    """One check in a URL's history: a job's result, or one region's of a job that named
    regions (``region`` None: the job's quorum)."""

    job_id: int
    batch: str | None
    checked_at: datetime
    outcome: str
    ok: bool
    status_code: int | None
    total_ms: float | None
    error: str | None
    region: str | None


class Check(NamedTuple):
    """A URL's check on one side of a comparison (a tuple: `runner changes` makes two per
    URL of a batch, 200,000 at 100,000 URLs, three times faster than a frozen dataclass)."""

    job_id: int
    outcome: str
    ok: bool
    status_code: int | None
    total_ms: float | None
    final_url: str | None
    checked_at: datetime
    cert: str | None  # the leaf certificate's not_after: a new certificate changes it


@dataclass(frozen=True)
class Diff:
    url: str
    change: str  # new_failure, recovered, still_failing, new, gone, slower, changed
    before: Check | None
    after: Check | None
    url_id: int | None = None  # the URL's id (urls.id): the page opens its history by it


_URL_COLUMNS = ("u.id, u.url, u.state, u.since, u.last_checked_at, u.last_job_id, u.last_outcome, "
                "u.last_status_code, u.last_total_ms, u.last_error, "
                # the latest check's page title: one primary-key look-up per row listed (null once pruned)
                "(SELECT r.title FROM results r WHERE r.job_id = u.last_job_id)")


def list_urls(store: Store, flt: UrlFilter = UrlFilter(), *, since: datetime, sort: str = "state",
              limit: int | None = 100, region: str | None = None, offset: int = 0) -> list[UrlView]:
    """One row per URL, its figures summed since ``since`` (the window); ``offset`` rows of
    that order skipped first (the TUI's and the API's pages: only the rows shown are read)."""
    d = store.dialect
    if sort == "state" and flt.state is None:
        rows: list[Any] = []
        for state in STATE_ORDER:
            if limit is not None and len(rows) >= limit:
                break
            part = replace(flt, state=state)
            if offset:
                n = count_urls(store, part)
                if offset >= n:
                    offset -= n
                    continue
            rows += _rows(store, part, sort, None if limit is None else limit - len(rows), offset)
            offset = 0
    else:
        rows = _rows(store, flt, sort, limit, offset)
    with d.transaction(write=False) as cur:
        sums = window(d, cur, [r[0] for r in rows], since, region or OVERALL)
    return [_view(d, row, sums[row[0]]) for row in rows]


def count_urls(store: Store, flt: UrlFilter = UrlFilter()) -> int:
    """How many URLs :func:`list_urls` would list without a limit."""
    where, params = _where(store, flt)
    with store.dialect.transaction(write=False) as cur:
        cur.execute(f"SELECT count(*) FROM urls u WHERE {' AND '.join(where) or '1 = 1'}", params)
        return int(cur.fetchone()[0])


def state_counts(store: Store) -> dict[str, int]:
    """How many URLs are in each state (every state named, 0 when none): the TUI's status
    line and the page's header."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT state, count(*) FROM urls GROUP BY state")
        found = {str(s): int(n) for s, n in cur.fetchall()}
    return {s: found.get(s, 0) for s in STATE_ORDER}


def url_states(store: Store, texts: Sequence[str]) -> dict[str, str]:
    """The state of each of these (normalised) URLs that has a row."""
    d = store.dialect
    out: dict[str, str] = {}
    texts = sorted(set(texts))
    with d.transaction(write=False) as cur:
        for start in range(0, len(texts), 1000):
            test, params = d.any_of("url", texts[start:start + 1000])
            cur.execute(f"SELECT url, state FROM urls WHERE {test}", params)
            out.update((str(u), str(s)) for u, s in cur.fetchall())
    return out


def latest_batch(store: Store) -> int | None:
    """The newest batch's id (what "since the last batch" compares with)."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT max(id) FROM batches")
        row = cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])


def _rows(store: Store, flt: UrlFilter, sort: str, limit: int | None, offset: int = 0) -> list[Any]:
    where, params = _where(store, flt)
    sql = (f"SELECT {_URL_COLUMNS} FROM urls u WHERE {' AND '.join(where) or '1 = 1'} "  # our fragments
           f"ORDER BY {_ORDER[sort]}")
    if limit is not None:
        sql += " LIMIT %s"
        params.append(limit)
    elif offset:
        sql += " LIMIT -1" if store.kind == "sqlite" else " LIMIT ALL"
    if offset:
        sql += " OFFSET %s"
        params.append(offset)
    with store.dialect.transaction(write=False) as cur:
        cur.execute(sql, params)
        rows: list[Any] = cur.fetchall()
        return rows


def _where(store: Store, flt: UrlFilter) -> tuple[list[str], list[Any]]:
    d = store.dialect
    where: list[str] = []
    params: list[Any] = []
    if flt.state:
        where.append("u.state = %s")
        params.append(flt.state)
    if flt.changed_since is not None:
        where.append("u.since >= %s")
        params.append(d.ts(flt.changed_since))
    if flt.url is not None:
        where.append("u.url = %s")
        params.append(flt.url)
    if flt.url_id is not None:
        where.append("u.id = %s")
        params.append(flt.url_id)
    if flt.text:
        test, pattern = d.contains("u.url", flt.text)
        where.append(test)
        params.append(pattern)
    if flt.batch_ids is not None:
        test, p = d.any_of("j.batch_id", flt.batch_ids)
        where.append(f"EXISTS (SELECT 1 FROM jobs j WHERE j.url_id = u.id AND {test})")
        params.extend(p)
    if flt.change is not None:
        if flt.change not in ("new_failure", "recovered", "still_failing") or flt.change_batch is None:
            raise ValueError(f"change filter {flt.change!r} needs one of new_failure, recovered, "
                             "still_failing and a batch")
        changed = "EXISTS (SELECT 1 FROM url_changes c WHERE c.url_id = u.id AND c.batch_id = %s AND c.change = %s)"
        if flt.change == "still_failing":
            where.append("u.state = 'failing' AND EXISTS (SELECT 1 FROM jobs j WHERE j.url_id = u.id "
                         f"AND j.batch_id = %s AND j.state = 'done') AND NOT {changed}")
            params.extend([flt.change_batch, flt.change_batch, "new_failure"])
        else:
            where.append(changed + (" AND u.state = 'failing'" if flt.change == "new_failure" else ""))
            params.extend([flt.change_batch, flt.change])
    return where, params


def _view(d: Any, row: Sequence[Any], sums: Rollup) -> UrlView:
    return UrlView(id=row[0], url=row[1], state=row[2], since=d.parse_ts(row[3]), last_checked_at=d.parse_ts(row[4]),
                   last_job_id=row[5], last_outcome=row[6], last_status_code=row[7],
                   last_total_ms=None if row[8] is None else float(row[8]), last_error=row[9],
                   last_title=row[10], window=sums)


def get_url(store: Store, url: str | None, *, since: datetime, region: str | None = None,
            url_id: int | None = None) -> UrlView | None:
    """The URL as stored (normalised), or (``url`` None) the URL of id ``url_id``."""
    flt = UrlFilter(url=url) if url is not None else UrlFilter(url_id=url_id)
    found = list_urls(store, flt, since=since, sort="url", limit=1, region=region)
    return found[0] if found else None


def url_changes(store: Store, view: UrlView, *, since: datetime | None = None, limit: int = 100) -> list[Change]:
    """A URL's changes, newest first."""
    d = store.dialect
    sql = ("SELECT at, from_state, to_state, change, job_id, batch_id, outcome, status_code, error, region "
           "FROM url_changes WHERE url_id = %s")
    params: list[Any] = [view.id]
    if since is not None:
        sql += " AND at >= %s"
        params.append(d.ts(since))
    with d.transaction(write=False) as cur:
        cur.execute(sql + " ORDER BY at DESC, id DESC LIMIT %s", [*params, limit])
        rows = cur.fetchall()
    return [Change(url_id=view.id, url=view.url, at=d.parse_ts(r[0]), from_state=r[1], to_state=r[2], change=r[3],
                   job_id=r[4], batch_id=r[5], outcome=r[6], status_code=r[7], error=r[8], region=r[9])
            for r in rows]


def rollup_series(store: Store, url_id: int, *, since: datetime, grain: str = "h",
                  region: str | None = None) -> list[tuple[datetime, Rollup]]:
    """A URL's rollups since ``since``, oldest first, one per hour (or day): its latency and
    outcomes over a window, pruned results included."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute("SELECT start, checks, ok, by_outcome, hist FROM url_rollups WHERE url_id = %s AND grain = %s "
                    "AND region = %s AND start >= %s ORDER BY start",
                    (url_id, grain, region or OVERALL, d.ts(floor_to(since, grain))))
        return [(d.parse_ts(r[0]), Rollup.of_row(r[1], r[2], r[3], r[4])) for r in cur.fetchall()]


def latest_change_id(store: Store) -> int:
    """The highest ``url_changes`` id so far (0 when none): where a new event stream starts."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT COALESCE(max(id), 0) FROM url_changes")
        return int(cur.fetchone()[0])


def changes_after(store: Store, after_id: int, *, limit: int = 2000, text: str | None = None,
                  batch: str | None = None) -> tuple[list[int], list[tuple[int, Change]]]:
    """The ids of every change stored after ``after_id`` (unfiltered, so a reader can tell a
    gap from a filtered-out row), and the changes among them whose URL contains ``text``
    and whose job is in ``batch`` (a name, or an id, as the job list's filter takes it):
    ``(id, change)`` in id order."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute("SELECT id FROM url_changes WHERE id > %s ORDER BY id LIMIT %s", (after_id, limit))
        ids = [int(r[0]) for r in cur.fetchall()]
        if not ids:
            return [], []
        test, params = d.any_of("c.id", ids)
        where = [test]
        if text:
            test, pattern = d.contains("u.url", text)
            where.append(test)
            params.append(pattern)
        if batch:
            where.append("c.batch_id IN (SELECT id FROM batches WHERE name = %s OR id = %s)")
            as_id = batch_id_of(batch)
            params.extend([batch, -1 if as_id is None else as_id])
        cur.execute("SELECT c.id, c.url_id, u.url, c.at, c.from_state, c.to_state, c.change, c.job_id, c.batch_id, "
                    "c.outcome, c.status_code, c.error, c.region FROM url_changes c JOIN urls u ON u.id = c.url_id "
                    f"WHERE {' AND '.join(where)} ORDER BY c.id", params)
        rows = cur.fetchall()
    return ids, [(int(r[0]), Change(url_id=r[1], url=r[2], at=d.parse_ts(r[3]), from_state=r[4], to_state=r[5],
                                    change=r[6], job_id=r[7], batch_id=r[8], outcome=r[9], status_code=r[10],
                                    error=r[11], region=r[12])) for r in rows]


def recent_checks(store: Store, url_id: int, *, since: datetime | None = None, limit: int = 50,
                  region: str | None = None) -> list[Point]:
    """A URL's latest checks still stored, newest first: each job's result (region None
    for a job that named regions: its quorum) and each region's result of such a job."""
    d = store.dialect
    named = d.json_text("j.options", "regions")
    cols = "r.outcome, r.ok, r.status_code, r.total_ms, r.error, r.checked_at"
    quorum = (f"SELECT j.id, b.name, {cols}, CASE WHEN {named} IS NULL THEN r.region END AS region, r.checked_at AS at "
              "FROM jobs j JOIN results r ON r.job_id = j.id LEFT JOIN batches b ON b.id = j.batch_id "
              "WHERE j.url_id = %s AND j.state <> 'cancelled'")
    regional = (f"SELECT j.id, b.name, {cols}, r.region, r.checked_at "
                "FROM jobs j JOIN region_results r ON r.job_id = j.id "
                "LEFT JOIN batches b ON b.id = j.batch_id WHERE j.url_id = %s AND j.state <> 'cancelled'")
    params: list[Any] = [url_id]
    if since is not None:
        quorum += " AND r.checked_at >= %s"
        regional += " AND r.checked_at >= %s"
        params.append(d.ts(since))
    sql = f"SELECT * FROM ({quorum} UNION ALL {regional}) h"
    params = params * 2
    if region is not None:
        sql += " WHERE h.region = %s"
        params.append(region)
    with d.transaction(write=False) as cur:
        # Newest first; a job's quorum (region NULL) before its regions.
        cur.execute(f"{sql} ORDER BY h.at DESC, 1 DESC, h.region IS NOT NULL, h.region LIMIT %s",
                    [*params, limit])
        rows = cur.fetchall()
    points = [Point(job_id=r[0], batch=r[1], outcome=r[2], ok=bool(r[3]), status_code=r[4],
                    total_ms=None if r[5] is None else float(r[5]), error=r[6], checked_at=d.parse_ts(r[7]),
                    region=r[8]) for r in rows]
    return points


# ---------------------------------------------------------------------------- comparing runs


def find_batch(store: Store, name: str, *, before: int | None = None) -> int | None:
    """The batch a user names: a numeric id, else the latest batch of that name (with
    ``before``, the latest of that name older than batch ``before``)."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        if before is None and (as_id := batch_id_of(name)) is not None:
            cur.execute("SELECT id FROM batches WHERE id = %s", (as_id,))
            row = cur.fetchone()
            if row:
                return int(row[0])
        sql, params = "SELECT max(id) FROM batches WHERE name = %s", list[Any]([name])
        if before is not None:
            sql += " AND id < %s"
            params.append(before)
        cur.execute(sql, params)
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None


def _check_columns(d: Any) -> str:
    columns: str = ("j.url_id, j.id, r.outcome, r.ok, r.status_code, r.total_ms, r.final_url, r.checked_at, "
                    + d.json_text("r.detail", "tls", "not_after"))
    return columns


def _checks(d: Any, rows: Sequence[Sequence[Any]]) -> dict[int, Check]:
    """The last check per URL of rows in id order."""
    out: dict[int, Check] = {}
    for r in rows:
        # Positional: job_id, outcome, ok, status_code, total_ms, final_url, checked_at, cert.
        out[r[0]] = Check(r[1], r[2], bool(r[3]), r[4], None if r[5] is None else float(r[5]), r[6],
                          d.parse_ts(r[7]), r[8])
    return out


def batch_checks(store: Store, batch_id: int) -> dict[int, Check]:
    """Each URL's latest check in a batch (cancelled jobs never count)."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        # The bounds on r.job_id (the batch's first and last job, two jobs_batch descents)
        # let the planner walk results_pkey over the batch's range beside jobs_batch; without
        # them PostgreSQL hashes the batch's jobs and scans every result (0.6 s at 2M results).
        cur.execute(f"SELECT {_check_columns(d)} FROM jobs j JOIN results r ON r.job_id = j.id "
                    "WHERE j.batch_id = %s AND j.url_id IS NOT NULL AND j.state <> 'cancelled' "
                    "AND r.job_id >= (SELECT min(id) FROM jobs WHERE batch_id = %s) "
                    "AND r.job_id <= (SELECT max(id) FROM jobs WHERE batch_id = %s) ORDER BY j.id",
                    (batch_id, batch_id, batch_id))
        return _checks(d, cur.fetchall())


def checks_before(store: Store, url_ids: Sequence[int], *, below_job: int | None = None,
                  before: datetime | None = None, chunk: int = 1000) -> dict[int, Check]:
    """Each URL's latest check from a job older than ``below_job`` (or checked before
    ``before``)."""
    d = store.dialect
    out: dict[int, Check] = {}
    ids = sorted(set(url_ids))
    if below_job is not None:
        bound, value = "j.id < %s", below_job
    else:
        bound, value = "r.checked_at < %s", d.ts(before)
    with d.transaction(write=False) as cur:
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            test, params = d.any_of("u.id", part)
            # Per URL, its newest job below the bound that has a result: a backward walk of
            # jobs_url (url_id, id) that stops at the first, not a GROUP BY over its history.
            cur.execute(f"SELECT (SELECT j.id FROM jobs j JOIN results r ON r.job_id = j.id WHERE j.url_id = u.id "
                        f"AND {bound} AND j.state <> 'cancelled' ORDER BY j.id DESC LIMIT 1) FROM urls u WHERE {test}",
                        [value, *params])
            job_ids = sorted(row[0] for row in cur.fetchall() if row[0] is not None)
            if not job_ids:
                continue
            job_test, job_params = d.any_of("j.id", job_ids)
            cur.execute(f"SELECT {_check_columns(d)} FROM jobs j JOIN results r ON r.job_id = j.id "
                        f"WHERE {job_test} ORDER BY j.id", job_params)
            out.update(_checks(d, cur.fetchall()))
    return out


def urls_with_jobs_between(store: Store, low_job: int, high_job: int, *, except_batch: int | None = None) -> set[int]:
    """The URLs with a job (any state, with or without a result) whose id lies strictly
    between ``low_job`` and ``high_job``, jobs of ``except_batch`` aside: one range walk
    of jobs_pkey (a night's jobs are contiguous ids)."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT DISTINCT url_id FROM jobs WHERE id > %s AND id < %s AND url_id IS NOT NULL "
                    "AND (batch_id IS NULL OR batch_id <> %s)",
                    (low_job, high_job, -1 if except_batch is None else except_batch))
        return {int(row[0]) for row in cur.fetchall()}


def checks_since(store: Store, since: datetime) -> dict[int, Check]:
    """Each URL's latest check since ``since``."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute(f"SELECT {_check_columns(d)} FROM jobs j JOIN results r ON r.job_id = j.id "
                    "WHERE r.checked_at >= %s AND j.url_id IS NOT NULL AND j.state <> 'cancelled' ORDER BY j.id",
                    (d.ts(since),))
        return _checks(d, cur.fetchall())


def first_job(store: Store, batch_id: int) -> int | None:
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT min(id) FROM jobs WHERE batch_id = %s", (batch_id,))
        row = cur.fetchone()
        return None if row is None or row[0] is None else int(row[0])


def url_texts(store: Store, url_ids: Sequence[int]) -> dict[int, str]:
    d = store.dialect
    out: dict[int, str] = {}
    ids = sorted(set(url_ids))
    with d.transaction(write=False) as cur:
        for start in range(0, len(ids), 1000):
            test, params = d.any_of("id", ids[start:start + 1000])
            cur.execute(f"SELECT id, url FROM urls WHERE {test}", params)
            out.update(cur.fetchall())
    return out
