"""A URL's history in the detail screen: its state and since when, uptime and p50/p95 over
the window, latency over the window (Textual's ``Sparkline``), the last 50 outcomes as a
strip (✓ ok, ~ slow, ✗ failed) and the last changes.

:func:`load_history` reads (a worker thread); :func:`history_text` draws, every value
appended as plain text (never markup). The reads are issue 21's (db/urls.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from textual.content import Content

from db import Change, Store
from db.rollups import percentile
from db.urls import Point, UrlView, get_url, recent_checks, rollup_series, url_changes
from runner.text import printable

from .columns import human_ms
from .styled import FAILED, MUTED, OK, WARNING, Styled
from .url_rows import STATE_MARKS, WINDOW

STRIP = 50  # outcomes in the strip
CHANGES = 5  # changes listed
STATE_STYLES = {"ok": f"bold {OK}", "slow": f"bold {WARNING}", "failing": f"bold {FAILED}", "pending": MUTED}


@dataclass(frozen=True)
class History:
    view: UrlView
    latency: tuple[float, ...]  # the median per hour over the window, oldest first
    recent: tuple[Point, ...]  # newest first, one per job (a job's quorum when it named regions)
    changes: tuple[Change, ...]  # newest first
    slow_ms: float | None  # the URL's slow threshold (its latest job's --slow-ms)


def load_history(store: Store, url: str, *, now: datetime, slow_ms: float | None = None) -> History | None:
    """The URL's history (None: it has no row, e.g. a job whose URL was never normalised)."""
    view = get_url(store, url, since=now - WINDOW)
    if view is None:
        return None
    latency = tuple(ms for _, r in rollup_series(store, view.id, since=now - WINDOW)
                    if (ms := percentile(r.hist, 0.5)) is not None)
    points: list[Point] = []
    seen: set[int] = set()
    for p in recent_checks(store, view.id, limit=STRIP * 2):
        if p.job_id not in seen:
            seen.add(p.job_id)
            points.append(p)
    changes = url_changes(store, view, limit=CHANGES)
    return History(view, latency, tuple(points[:STRIP]), tuple(changes), slow_ms)


def mark(point: Point, slow_ms: float | None) -> tuple[str, str]:
    """A check's mark and style: ✓ ok, ~ ok but slower than the URL's slow threshold, ✗ failed."""
    if not point.ok:
        return "✗", FAILED
    if slow_ms is not None and point.total_ms is not None and point.total_ms > slow_ms:
        return "~", WARNING
    return "✓", OK


def _when(value: datetime | None, tz: tzinfo | None) -> str:
    return "-" if value is None else value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def history_text(h: History, tz: tzinfo | None) -> Content:
    v = h.view
    text = Styled()
    text.append(f"  {'state':<14}", "dim")
    text.append(STATE_MARKS.get(v.state, printable(v.state)), STATE_STYLES.get(v.state, ""))
    text.append(f" since {_when(v.since, tz)}\n")
    text.append(f"  {'uptime':<14}", "dim")
    days = WINDOW.days
    if v.uptime is None:
        text.append(f"no checks in {days} days\n")
    else:
        text.append(f"{v.uptime * 100:.2f}%", OK if v.uptime >= 0.99 else (WARNING if v.uptime >= 0.9 else FAILED))
        text.append(f" of {v.window.checks:,} check{'s' if v.window.checks != 1 else ''} in {days} days"
                    f" · p50 {human_ms(v.latency(0.5)).strip() or '-'}"
                    f" · p95 {human_ms(v.latency(0.95)).strip() or '-'}\n")
    text.append(f"  {'last ' + str(len(h.recent)):<14}", "dim")
    for p in reversed(h.recent):  # oldest first, the newest at the right
        symbol, style = mark(p, h.slow_ms)
        text.append(symbol, style)
    text.append("  (oldest → newest)\n" if h.recent else "no checks stored\n", MUTED)
    text.append(f"  {'changes':<14}", "dim")
    if not h.changes:
        text.append("none recorded\n", MUTED)
    for n, c in enumerate(h.changes):
        if n:
            text.append(" " * 16)
        text.append(_when(c.at, tz))
        text.append(f"  {printable(c.from_state or '-')} → ")
        text.append(printable(c.to_state), STATE_STYLES.get(c.to_state, ""))
        text.append(f"  {printable(c.change)}", MUTED)
        detail = " ".join(printable(x) for x in (c.outcome, c.status_code) if x is not None)
        if detail:
            text.append(f"  {detail}")
        text.append("\n")
        if c.error:  # a line of its own: at 80 columns it would wrap without its indent
            text.append(" " * 18)
            text.append(printable(c.error, 200), FAILED)
            text.append("\n")
    return text.content


__all__ = ["History", "history_text", "load_history"]
