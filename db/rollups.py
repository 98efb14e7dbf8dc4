"""A URL's checks summed per hour and per day (the ``url_rollups`` table): counts, failures
by outcome, and a latency histogram that merges exactly, so uptime and p50/p95/p99 outlive
``runner prune``.

The histogram is a fixed log-bucket one, not a DDSketch: bucket ``i`` holds latencies in
``[BASE**i, BASE**(i+1))`` ms with ``BASE = 1.02``, and a percentile answers the bucket's
geometric middle, within ``sqrt(1.02) - 1 < 1%`` of any latency in it. Fixed buckets merge
by adding counts (an hour into a day, days into a window) with no error added, need no
parameters stored beside them, and a URL's checks fall in a few dozen buckets, kept sparse
(``{"bucket": count}``). DDSketch gives the same guarantee with collapsing for unbounded
ranges, which a check's bounded time (0.1 ms to the 300 s deadline: 740 buckets) does not
need.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .dialects import Dialect

BASE = 1.02
_LOG_BASE = math.log(BASE)
FLOOR_MS = 0.1  # latencies below count in the first bucket (a check never takes less)
GRAINS = {"h": timedelta(hours=1), "d": timedelta(days=1)}
OVERALL = ""  # the region of a job's own outcome (its quorum's when it named regions)
# Rows of region R hold the region results of jobs that named regions (a job that named
# none has its one check under OVERALL only: one row, not two, per check and grain).


def bucket(ms: float) -> int:
    return int(math.floor(math.log(max(ms, FLOOR_MS)) / _LOG_BASE))


def bucket_value(index: int) -> float:
    """The geometric middle of a bucket: within 1% of every latency in it."""
    value: float = BASE ** (index + 0.5)
    return value


def percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The latency at rank ``ceil(q * n)`` (nearest rank), within 1%; None when empty."""
    n = sum(hist.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for index in sorted(hist):
        seen += hist[index]
        if seen >= rank:
            return bucket_value(index)
    return bucket_value(max(hist))  # pragma: no cover - ranks never pass n


def floor_to(at: datetime, grain: str) -> datetime:
    if grain == "h":
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class Rollup:
    """Checks of a URL in some span: what a window sums from rollup rows."""

    checks: int = 0
    ok: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    hist: dict[int, int] = field(default_factory=dict)

    def add(self, ok: bool, outcome: str, total_ms: float | None) -> None:
        self.checks += 1
        self.ok += int(ok)
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1
        if total_ms is not None:
            i = bucket(total_ms)
            self.hist[i] = self.hist.get(i, 0) + 1

    def merge(self, other: Rollup) -> None:
        self.checks += other.checks
        self.ok += other.ok
        for k, v in other.by_outcome.items():
            self.by_outcome[k] = self.by_outcome.get(k, 0) + v
        for i, v in other.hist.items():
            self.hist[i] = self.hist.get(i, 0) + v

    @classmethod
    def of_row(cls, checks: int, ok: int, by_outcome: str, hist: str) -> Rollup:
        return cls(int(checks), int(ok), json.loads(by_outcome), {int(k): v for k, v in json.loads(hist).items()})


# (url id, region, checked at, ok, outcome, total ms): one history point.
Point = tuple[int, str, datetime, bool, str, "float | None"]


def _outcomes_json(counts: dict[str, int]) -> str:
    if all(k.isidentifier() for k in counts):  # outcomes are (no quote, backslash or control): by hand
        return "{" + ",".join(f'"{k}":{n}' for k, n in counts.items()) + "}"
    return json.dumps(counts, separators=(",", ":"))


def _hist_json(hist: dict[int, int]) -> str:
    # Integers only: written by hand, three times faster than json.dumps for a few buckets.
    return "{" + ",".join(f'"{i}":{n}' for i, n in sorted(hist.items())) + "}"


def add_points(d: Dialect, cur: Any, points: Iterable[Point]) -> None:
    """Add history points to their hour's and day's rollups, in ``cur``'s transaction.

    Each row is added to in the database (``ON CONFLICT DO UPDATE``, the counts merged by
    :meth:`Dialect.counts_add`), so two writers never lose each other's counts; the caller
    holds the URLs' row locks anyway.
    """
    deltas: dict[tuple[int, str, datetime, str], Rollup] = {}
    for url_id, region, at, ok, outcome, total_ms in points:
        for grain in GRAINS:
            key = (url_id, grain, floor_to(at, grain), region)
            deltas.setdefault(key, Rollup()).add(ok, outcome, total_ms)
    if not deltas:
        return
    rows = [(url_id, grain, d.ts(start), region, r.checks, r.ok, _outcomes_json(r.by_outcome), _hist_json(r.hist))
            for (url_id, grain, start, region), r in sorted(deltas.items())]
    # Added in the database (no read-modify-write): one statement for the whole batch.
    d.insert_returning(cur, "INSERT INTO url_rollups AS u (url_id, grain, start, region, checks, ok, by_outcome, hist) "
                            "VALUES ", rows,
                       " ON CONFLICT (url_id, grain, start, region) DO UPDATE SET checks = u.checks + EXCLUDED.checks, "
                       "ok = u.ok + EXCLUDED.ok, "
                       f"by_outcome = {d.counts_add('u.by_outcome', 'EXCLUDED.by_outcome')}, "
                       f"hist = {d.counts_add('u.hist', 'EXCLUDED.hist')}",
                       ("bigint", "text", "timestamptz", "text", "integer", "integer", "text", "text"))


def window(d: Dialect, cur: Any, url_ids: list[int], since: datetime, region: str = OVERALL) -> dict[int, Rollup]:
    """Each URL's checks since ``since`` (to the hour): days wholly after it from daily
    rows, the hours before the first such day from hourly rows."""
    out: dict[int, Rollup] = {u: Rollup() for u in url_ids}
    if not url_ids:
        return out
    first_hour = floor_to(since, "h")
    if first_hour < since:
        first_hour += GRAINS["h"]
    first_day = floor_to(since, "d")
    if first_day < since:
        first_day += GRAINS["d"]
    test, params = d.any_of("r.url_id", url_ids)
    where = (f"{test} AND r.region = %s AND ((r.grain = 'd' AND r.start >= %s) OR "
             "(r.grain = 'h' AND r.start >= %s AND r.start < %s))")
    params = [*params, region, d.ts(first_day), d.ts(first_hour), d.ts(first_day)]
    # Summed by the database, in one pass over the rows (a CTE named twice is computed
    # once): a page of 100 URLs over 30 days is 3,000 rows scattered on disk, so the rows
    # fetched, not the sums, are the cost. Per URL: a row with its counts (key NULL), then
    # a row per histogram bucket.
    cur.execute(f"WITH w AS (SELECT r.url_id, r.checks, r.ok, r.hist FROM url_rollups r WHERE {where}) "
                "SELECT url_id, NULL, sum(checks), sum(ok) FROM w GROUP BY url_id UNION ALL "
                f"SELECT w.url_id, b.key, sum(CAST(b.value AS integer)), NULL FROM w, {d.json_pairs('w.hist')} b "
                "GROUP BY w.url_id, b.key", params)
    for url_id, key, n, ok in cur.fetchall():
        if key is None:
            out[url_id].checks, out[url_id].ok = int(n), int(ok)
        else:
            out[url_id].hist[int(key)] = int(n)
    return out
