"""A crawl's state, kept with its batch: its settings, the URLs it has taken, their referrers.

A crawl is a batch that grows (``runner crawl``): a worker that checked a page in scope
hands its links here, and :func:`claim_and_record` says which of them are new to the crawl,
recording their jobs in the same transaction. The
database decides, not the workers: ``crawl_urls``' primary key is (batch, URL), so two
workers that find one link at once never both enqueue it (the second's insert waits for
the first's commit, then does nothing), and the count on the crawl's row, taken last in
the same transaction, gives back what went past ``--max-urls``: it is never exceeded.
URLs are inserted in sorted order, so two claims that share URLs wait for each other
instead of deadlocking. A URL's referrers (the pages that link to it, with the link's
text) are kept up to :data:`MAX_REFERRERS`, whatever the order workers find them in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .jobs import record_jobs
from .models import NewJob, utcnow
from .states import job_state
from .store import Store

MAX_REFERRERS = 20
CHUNK = 500  # rows per statement (SQLite takes at most 32,766 parameters)


@dataclass(frozen=True)
class Crawl:
    """A crawl's settings (``urls``: how many URLs it has taken so far)."""

    batch_id: int
    roots: tuple[str, ...]
    scope: str
    depth: int
    max_urls: int
    robots: bool
    options: dict[str, Any] = field(default_factory=dict)
    urls: int = 0
    robots_skipped: int = 0


def create_crawl(store: Store, crawl: Crawl) -> list[str]:
    """Record the crawl and claim its roots (depth 0); returns the roots claimed, in order
    (at most ``max_urls``; a root given twice once)."""
    d = store.dialect
    with d.transaction() as cur:
        cur.execute(
            "INSERT INTO crawls (batch_id, roots, scope, depth, max_urls, robots, options, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (crawl.batch_id, json.dumps(list(crawl.roots)), crawl.scope, crawl.depth, crawl.max_urls,
             d.boolean(crawl.robots), json.dumps(crawl.options, sort_keys=True), d.ts(utcnow())),
        )
        return [url for url, _ in _claim(cur, d, crawl.batch_id, [(url, 0) for url in crawl.roots])]


def get_crawl(store: Store, batch_id: int) -> Crawl | None:
    """The crawl that is this batch, or None (a batch that is not a crawl)."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT roots, scope, depth, max_urls, robots, options, urls, robots_skipped "
                    "FROM crawls WHERE batch_id = %s", (batch_id,))
        row = cur.fetchone()
    if row is None:
        return None
    return Crawl(batch_id=batch_id, roots=tuple(json.loads(row[0])), scope=row[1], depth=int(row[2]),
                 max_urls=int(row[3]), robots=bool(row[4]), options=json.loads(row[5]), urls=int(row[6]),
                 robots_skipped=int(row[7]))


def claim_urls(store: Store, batch_id: int, found: Sequence[tuple[str, int]],
               referrers: Sequence[tuple[str, str, str]] = (), *, robots_skipped: int = 0) -> list[tuple[str, int]]:
    """Take the URLs (with their depth) that are new to the crawl, while it has room; keep
    each ``(url, referrer, text)`` (up to :data:`MAX_REFERRERS` per URL). Returns the
    ``(url, depth)`` this call took: only its caller enqueues them."""
    with store.dialect.transaction() as cur:
        _keep_referrers(cur, batch_id, referrers)
        return _claim(cur, store.dialect, batch_id, found, robots_skipped)


def claim_and_record(store: Store, batch_id: int, found: Sequence[tuple[str, int]],
                     referrers: Sequence[tuple[str, str, str]], options_of: Callable[[str, int], str], *,
                     robots_skipped: int = 0) -> list[tuple[int, str, str]]:
    """:func:`claim_urls`, and the claimed URLs' jobs recorded (state queued, options from
    ``options_of(url, depth)``) in the same transaction: a worker killed at any point
    leaves both or neither, never a claimed URL without its job. Returns ``(job id, URL,
    options)`` for the caller to publish (a job whose message is then lost is queued, as
    `runner requeue --stale` finds it)."""
    d = store.dialect
    with d.transaction(announce=True) as cur:
        _keep_referrers(cur, batch_id, referrers)
        claimed = _claim(cur, d, batch_id, found, robots_skipped)
        jobs = [NewJob(url, options_of(url, depth)) for url, depth in claimed]
        ids = record_jobs(cur, d, batch_id, jobs, utcnow()) if jobs else []
    return [(job_id, job.url, str(job.options)) for job_id, job in zip(ids, jobs, strict=True)]


def _keep_referrers(cur: Any, batch_id: int, referrers: Sequence[tuple[str, str, str]]) -> None:
    rows: dict[tuple[str, str], str] = {}
    for url, referrer, text in referrers:
        rows.setdefault((url, referrer), text)  # a page's first link to a URL names it
    items = [(url, referrer, text) for (url, referrer), text in rows.items()]
    for start in range(0, len(items), CHUNK):
        part = items[start:start + CHUNK]
        # One statement per chunk (a round trip, not one per link); VALUES' columns are
        # column1.. in both dialects. A URL with its 20 referrers takes no more.
        cur.execute(
            "INSERT INTO crawl_referrers (batch_id, url, referrer, text) "
            "SELECT %s, v.column1, v.column2, v.column3 FROM (VALUES "
            + ", ".join("(%s, %s, %s)" for _ in part)
            + ") AS v WHERE (SELECT count(*) FROM crawl_referrers r WHERE r.batch_id = %s "
            "AND r.url = v.column1) < %s ON CONFLICT DO NOTHING",
            (batch_id, *(value for row in part for value in row), batch_id, MAX_REFERRERS),
        )


@dataclass(frozen=True)
class CrawlProgress:
    """A crawl still going: its batch, URLs checked, URLs to go, found so far (its bound)."""

    batch_id: int
    name: str
    done: int
    pending: int
    found: int
    max_urls: int
    robots_skipped: int


def crawls_going(store: Store, *, recent: int = 20) -> list[CrawlProgress]:
    """The crawls among the ``recent`` latest that still have jobs queued or running, newest
    first (``runner status``): one aggregate query over their jobs."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute(
            "SELECT c.batch_id, b.name, c.urls, c.max_urls, c.robots_skipped, "
            "SUM(CASE WHEN j.state = 'done' THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {job_state()} IN ('queued', 'running') THEN 1 ELSE 0 END) "
            "FROM (SELECT * FROM crawls ORDER BY batch_id DESC LIMIT %s) c "
            "JOIN batches b ON b.id = c.batch_id JOIN jobs j ON j.batch_id = c.batch_id "
            "GROUP BY c.batch_id, b.name, c.urls, c.max_urls, c.robots_skipped "
            f"HAVING SUM(CASE WHEN {job_state()} IN ('queued', 'running') THEN 1 ELSE 0 END) > 0 "
            "ORDER BY c.batch_id DESC",
            (recent,),
        )
        rows = cur.fetchall()
    return [CrawlProgress(int(r[0]), r[1], int(r[5]), int(r[6]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


def referrers_of(store: Store, job_ids: Sequence[int]) -> dict[int, list[dict[str, str]]]:
    """Each job's referrers (``{"url", "text"}``, by URL), for the jobs of crawls among these."""
    if not job_ids:
        return {}
    d = store.dialect
    where, params = d.any_of("j.id", list(job_ids))
    with d.transaction(write=False) as cur:
        cur.execute(
            "SELECT j.id, r.referrer, r.text FROM jobs j JOIN crawl_referrers r "
            f"ON r.batch_id = j.batch_id AND r.url = j.url WHERE {where} ORDER BY j.id, r.referrer",
            params,
        )
        rows = cur.fetchall()
    out: dict[int, list[dict[str, str]]] = {}
    for job_id, referrer, text in rows:
        found = out.setdefault(int(job_id), [])
        if len(found) < MAX_REFERRERS:
            found.append({"url": referrer, "text": text})
    return out


def _claim(cur: Any, d: Any, batch_id: int, found: Sequence[tuple[str, int]],
           robots_skipped: int = 0) -> list[tuple[str, int]]:
    """Insert the URLs new to the crawl (the primary key decides: a URL another transaction
    took first is skipped), then count them on the crawl's row, and give back what went past
    ``max_urls``. The row's lock is taken last, so claims of many workers overlap but for
    that one statement and the commit."""
    wanted: dict[str, int] = {}
    for url, depth in found:
        if url not in wanted or depth < wanted[url]:
            wanted[url] = depth
    items = sorted(wanted.items())  # one lock order for every claim: waits, never deadlocks
    claimed: list[tuple[str, int]] = []
    for start in range(0, len(items), CHUNK):
        part = items[start:start + CHUNK]
        new = {row[0] for row in d.insert_returning(
            cur, "INSERT INTO crawl_urls (batch_id, url, depth) VALUES ",
            [(batch_id, url, depth) for url, depth in part], " ON CONFLICT DO NOTHING RETURNING url")}
        claimed += [(url, depth) for url, depth in part if url in new]
    cur.execute("UPDATE crawls SET urls = urls + %s, robots_skipped = robots_skipped + %s WHERE batch_id = %s "
                "RETURNING urls, max_urls", (len(claimed), robots_skipped, batch_id))
    row = cur.fetchone()
    if row is None:
        return []
    over = min(len(claimed), int(row[0]) - int(row[1]))
    if over > 0:
        claimed, extra = claimed[: len(claimed) - over], claimed[len(claimed) - over:]
        for start in range(0, len(extra), CHUNK):
            where, params = d.any_of("url", [url for url, _ in extra[start:start + CHUNK]])
            cur.execute(f"DELETE FROM crawl_urls WHERE batch_id = %s AND {where}", (batch_id, *params))
        cur.execute("UPDATE crawls SET urls = urls - %s WHERE batch_id = %s", (over, batch_id))
    return claimed
