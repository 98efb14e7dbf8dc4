"""The by-URL view's rows: what a page of URLs holds, how it is read, and each cell's text.

One row per URL (issue 21's ``urls`` table), read a page at a time: only the rows on screen
are fetched (``db.urls.list_urls`` with an offset), then, for those rows alone, each URL's
recent checks (the TREND sparkline) and its latest job (the title). Runs in worker threads.

Every cell is user data through :func:`runner.text.printable` in a ``rich.text.Text``,
never markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo

from rich.text import Text

from db import JobFilter, JobView, Store
from db.urls import UrlFilter, UrlView, count_urls, latest_batch, list_urls, recent_checks
from runner.jobs.history import sparkline
from runner.text import mask_url, printable

from .columns import SHORT_OUTCOMES, URL_LEAST, URL_MOST, URL_WANT, fit, url_cuts, when

WINDOW = timedelta(days=30)  # uptime and percentiles over this (runner urls' default --window)
TREND = 12  # checks in a row's sparkline
TITLE_LEAST = 12  # cells a TITLE column gets at least, or it is not shown
SORTS = ("state", "since", "latency", "url")
SORT_LABELS = {"state": "failing first", "since": "latest change first", "latency": "slowest first",
               "url": "by URL"}
CHANGES = ("new_failure", "recovered", "still_failing")
STATE_MARKS = {"ok": "✓ ok", "slow": "~ slow", "failing": "✗ failing", "pending": "· pending"}
# The theme variable each state's word is drawn in (resolved by the grid: cells are rich Text).
STATE_COLOURS = {"ok": "success", "slow": "warning", "failing": "error"}


def state_styles(theme: dict[str, str]) -> dict[str, str]:
    """Each state's style in the current theme (``App.theme_variables``)."""
    styles = {"pending": "dim"}
    for state, var in STATE_COLOURS.items():
        colour = theme.get(var, "")
        styles[state] = f"{'bold ' if state == 'failing' else ''}{colour}".strip() if colour.startswith("#") else ""
    return styles


@dataclass(frozen=True)
class UrlQuery:
    """What the by-URL view shows: a filter (text, a change since the last batch) and an order."""

    text: str | None = None
    change: str | None = None  # new_failure, recovered or still_failing since the last batch
    state: str | None = None
    sort: str = "state"

    def describe(self) -> str:
        parts = []
        if self.change:
            parts.append(f"{self.change.replace('_', ' ')} since the last batch")
        if self.state:
            parts.append(self.state)
        if self.text:
            parts.append(f"URL contains “{self.text}”")
        return ", ".join(parts) or "all URLs"


@dataclass(frozen=True)
class UrlRow:
    view: UrlView
    trend: tuple[float | None, ...] = ()  # latencies of the recent checks, oldest first
    job: JobView | None = None  # the latest job (its title; the detail opens it)


@dataclass(frozen=True)
class UrlPage:
    query: UrlQuery
    offset: int
    rows: tuple[UrlRow, ...] = ()
    total: int = 0
    batch: int | None = None  # the batch a change filter compared with
    views: tuple[UrlView, ...] = field(default=(), repr=False)


def url_filter(store: Store, query: UrlQuery) -> tuple[UrlFilter | None, int | None]:
    """The store's filter for a query (None: nothing can match, no batch yet) and the batch."""
    flt = UrlFilter(state=query.state, text=query.text)
    if query.change is None:
        return flt, None
    batch = latest_batch(store)
    if batch is None:
        return None, None
    return replace(flt, change=query.change, change_batch=batch), batch


def load_page(store: Store, query: UrlQuery, offset: int, limit: int, *, now: datetime,
              total: int | None = None) -> UrlPage:
    """Rows ``offset .. offset+limit`` of the view and its size (blocking: a worker thread);
    ``total``: the size counted a moment ago (a refresh need not count again)."""
    flt, batch = url_filter(store, query)
    if flt is None:
        return UrlPage(query, 0)
    if total is None:
        total = count_urls(store, flt)
    offset = max(0, min(offset, max(0, total - 1)))
    views = list_urls(store, flt, since=now - WINDOW, sort=query.sort, limit=limit, offset=offset)
    jobs = {v.id: v for v in store.list_jobs(JobFilter(ids=tuple(v.last_job_id for v in views if v.last_job_id)),
                                             limit=len(views))} if views else {}
    rows = []
    for v in views:
        points, seen = [], set()
        for p in recent_checks(store, v.id, limit=TREND * 2):
            if p.job_id not in seen:  # a job that named regions: its quorum's point, listed first
                seen.add(p.job_id)
                points.append(p.total_ms)
        rows.append(UrlRow(v, tuple(reversed(points[:TREND])), jobs.get(v.last_job_id or -1)))
    if offset + len(rows) > total or (len(rows) < limit and offset + len(rows) != total):
        total = count_urls(store, flt)  # URLs came or went since the count
    return UrlPage(query, offset, tuple(rows), total, batch)


# ---------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class UrlColumn:
    key: str
    title: str
    width: int


def url_layout(width: int, url_need: int | None = None) -> list[UrlColumn]:
    """Columns for a terminal ``width`` wide: the URL gets its cells first (no more than the
    longest on screen, ``url_need``, needs), TITLE the rest."""
    fixed = [UrlColumn("state", "STATE", 9), UrlColumn("since", "SINCE", 11), UrlColumn("last", "LAST", 18),
             UrlColumn("uptime", "UPTIME", 7), UrlColumn("trend", "TREND", TREND)]
    if width < 90:  # 80 columns: SINCE goes first (the detail says it)
        fixed = [c for c in fixed if c.key != "since"]
    used = sum(c.width + 1 for c in fixed) + 2  # gaps, the scrollbar
    spare = max(URL_LEAST, width - used)
    if spare < URL_WANT + 1 + TITLE_LEAST:  # no room for a title: the URL has it all
        return [*fixed, UrlColumn("url", "URL", spare)]
    url = min(URL_MOST, max(URL_WANT, (spare - 1) * 3 // 5))
    if url_need is not None:
        url = min(url, max(URL_LEAST, url_need))
    return [*fixed, UrlColumn("url", "URL", url), UrlColumn("title", "TITLE", spare - url - 1)]


def _last(v: UrlView, now: datetime, tz: tzinfo | None) -> str:
    if v.last_outcome is None:
        return ""
    what = str(v.last_status_code) if v.last_status_code is not None else SHORT_OUTCOMES.get(v.last_outcome,
                                                                                              v.last_outcome)
    return f"{printable(what, 9)} {when(v.last_checked_at, now, tz)}"


def row_text(row: UrlRow, cols: list[UrlColumn], cuts: dict[str, str], now: datetime, tz: tzinfo | None,
             styles: dict[str, str] | None = None) -> list[Text]:
    """One row's cells, each plain text in a ``Text`` (never markup); ``styles``: each
    state's (:func:`state_styles`)."""
    v = row.view
    cells = []
    for col in cols:
        style = ""
        if col.key == "state":
            value, style = STATE_MARKS.get(v.state, v.state), (styles or {}).get(v.state, "")
        elif col.key == "since":
            value = when(v.since, now, tz)
        elif col.key == "last":
            value = _last(v, now, tz)
        elif col.key == "uptime":
            value = "" if v.uptime is None else f"{v.uptime * 100:.1f}%"
        elif col.key == "trend":
            value = sparkline(row.trend)
        elif col.key == "url":
            shown = printable(mask_url(v.url))
            value = cuts.get(shown, shown)
        else:
            value = printable(row.job.title) if row.job is not None and row.job.title else ""
        cells.append(Text(fit(value, col.width, right=col.key == "uptime"), style=style, no_wrap=True,
                          overflow="crop"))
    return cells


def cuts_for(rows: tuple[UrlRow, ...], cols: list[UrlColumn]) -> dict[str, str]:
    width = next((c.width for c in cols if c.key == "url"), 40)
    return url_cuts([printable(mask_url(r.view.url)) for r in rows], width)


def header(cols: list[UrlColumn]) -> list[Text]:
    return [Text(fit(c.title, c.width, right=c.key == "uptime"), style="bold") for c in cols]


def cells_width(cols: list[UrlColumn]) -> int:
    return sum(c.width + 1 for c in cols)


__all__ = ["CHANGES", "SORTS", "SORT_LABELS", "UrlPage", "UrlQuery", "UrlRow", "load_page", "url_layout"]
