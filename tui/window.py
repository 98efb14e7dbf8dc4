"""The grid's window cache: the few rows around the screen, and how to fetch the next ones.

The grid never holds the history. It keeps one contiguous run of rows (a few screens) and
fetches another with keyset pagination: "the N rows after this row's key" costs an index
probe at row 10 as at row 1,000,000. Only a jump far from every known row (dragging the
scrollbar to the middle) falls back to an OFFSET, from whichever end is nearer.

Runs in worker threads: :func:`load` does blocking database calls.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from db import DEFAULT_REGION, JobFilter, JobView, Store
from db import grid as grid_sql
from db.regional import region_counts


@dataclass(frozen=True)
class Query:
    """What the grid shows: a filter and an order, both applied in SQL."""

    flt: JobFilter = field(default_factory=JobFilter)
    order: str = "newest"


@dataclass(frozen=True)
class Window:
    """Rows ``start .. start+len(rows)`` of the listing."""

    start: int = 0
    rows: tuple[JobView, ...] = ()
    # Region -> ok, per job that named regions (the REGIONS column's "2/3 ok"); jobs of
    # the default region alone are not looked up, so a fleet without regions pays nothing.
    regions: Mapping[int, dict[str, bool]] = field(default_factory=dict)

    @property
    def end(self) -> int:
        return self.start + len(self.rows)

    def get(self, index: int) -> JobView | None:
        if self.start <= index < self.end:
            return self.rows[index - self.start]
        return None

    def covers(self, a: int, b: int) -> bool:
        return self.start <= a and b <= self.end

    def index_of(self, job_id: int) -> int | None:
        for i, row in enumerate(self.rows):
            if row.id == job_id:
                return self.start + i
        return None


@dataclass(frozen=True)
class Loaded:
    """A fetched window, with the listing's size and rows that arrived above the old one."""

    query: Query
    window: Window
    total: int
    shift: int  # rows newly above the old window (newest order): indices moved down by this
    first_id: int | None  # id of row 0 (newest order), to count arrivals next time
    seconds: float


def load(store: Store, query: Query, old: Window, want: tuple[int, int], *, total: int | None,
         refresh: bool, first_id: int | None, recount: bool = True) -> Loaded:
    """Fetch rows ``want`` (old numbering), re-counting the listing when ``refresh``.

    Newest first, a refresh counts only the rows that arrived above row 0 (an index range
    over the new ids) unless ``recount``: a full count of a million rows costs tens of ms,
    so the grid asks for one only every few seconds (prunes and other orders need it).
    """
    t0 = time.perf_counter()
    flt, order = query.flt, query.order
    a, b = want
    a = max(0, a)
    b = max(a, b)
    limit = b - a
    shift = 0
    arrivals = None
    if refresh and order == "newest" and first_id is not None and total is not None:
        # Rows that arrived above row 0; when scrolled, the same rows stay on screen (indices move).
        arrivals = store.count_jobs(flt, order=order, above_id=first_id)
        if a > 0:
            shift = arrivals
    if total is None or (refresh and (recount or arrivals is None)):
        total = store.count_jobs(flt, order=order)
    elif arrivals is not None:
        total += arrivals
    rows, start = _fetch(store, query, old, a, b, limit, total, shift)
    if start + len(rows) > total:  # arrivals between the count and the page
        total = start + len(rows)
    new_first: int | None = None
    if order == "newest":
        if start == 0 and rows:
            new_first = rows[0].id
        elif refresh or first_id is None:
            top = store.list_jobs(flt, order=order, limit=1)
            new_first = top[0].id if top else None
        else:
            new_first = first_id
    regional = [r.id for r in rows if r.regions != (DEFAULT_REGION,)]
    regions = region_counts(store, regional) if regional else {}
    return Loaded(query, Window(start, tuple(rows), regions), total, shift, new_first, time.perf_counter() - t0)


def _fetch(store: Store, query: Query, old: Window, a: int, b: int, limit: int, total: int,
           shift: int) -> tuple[list[JobView], int]:
    """The cheapest way to rows ``a..b`` (old numbering): the smallest OFFSET from a known key."""
    flt, order = query.flt, query.order
    if limit <= 0:
        return [], a + shift
    # (offset cost, kind, anchor index in ``old``)
    plans: list[tuple[int, str, int]] = [(a + shift, "top", 0)]
    if total > 0:
        plans.append((max(0, total - (b + shift)), "tail", 0))
    if old.rows:
        k = min(a - 1, old.end - 1)
        if k >= old.start:
            plans.append((a - 1 - k, "after", k))
        k = max(b, old.start)
        if k < old.end:
            plans.append((k - b, "before", k))
    cost, kind, k = min(plans, key=lambda p: p[0])
    if kind == "top":
        rows = store.list_jobs(flt, order=order, limit=limit, offset=cost)
        return rows, cost
    if kind == "tail":
        rows = store.list_jobs(flt, order=order, limit=limit, offset=cost, before=grid_sql.TAIL[order])
        return rows, max(0, total - cost - len(rows))
    anchor = old.get(k)
    assert anchor is not None
    key = store.keyset(anchor, order)
    if kind == "after":
        rows = store.list_jobs(flt, order=order, limit=limit, offset=cost, after=key)
        return rows, k + 1 + cost + shift
    rows = store.list_jobs(flt, order=order, limit=limit, offset=cost, before=key)
    return rows, max(0, k - cost - len(rows) + shift)
