"""The grid's columns: what each shows, how wide it is, and which go first when space is short.

Every cell is made from user data through :func:`runner.text.printable` and appended to a
``rich.text.Text`` as plain text: a URL such as ``https://x.test/[/b]`` is never parsed as
markup, and an escape sequence in a title is shown as ``\\x1b``, never sent to the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from rich.cells import cell_len, set_cell_size

from db import DEFAULT_REGION, JobView
from db.regions import summary
from runner.jobs.report import state_label
from runner.text import mask_url, printable


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int  # fixed width, or the minimum of a flexible column
    priority: int  # 0 = always shown; higher numbers are dropped first on narrow terminals
    right: bool = False
    flex: int = 0  # share of the spare width (0 = fixed)


# Display order, left to right.
COLUMNS: tuple[Column, ...] = (
    Column("state", "STATE", 20, 0),
    Column("regions", "REGIONS", 9, 3),  # only while a job on screen named regions
    Column("code", "CODE", 4, 1, right=True),
    Column("time", "TIME", 7, 2, right=True),
    Column("size", "SIZE", 7, 6, right=True),
    Column("url", "URL", 20, 0, flex=4),
    Column("title", "TITLE", 12, 5, flex=2),
    Column("checked", "CHECKED", 11, 4),
    Column("attempts", "TRY", 3, 7, right=True),
    Column("error", "ERROR", 14, 3, flex=3),
)


def layout(width: int, *, regions: bool = False) -> list[tuple[Column, int]]:
    """The columns that fit in ``width`` cells, each with the width it gets. The REGIONS
    column is offered only with ``regions`` (some job on screen named regions)."""
    chosen: list[Column] = []
    offered = [c for c in COLUMNS if regions or c.key != "regions"]
    # The always-shown columns first, then the others by importance.
    for col in sorted(offered, key=lambda c: c.priority):
        trial = [*chosen, col]
        need = sum(c.width for c in trial) + len(trial) - 1
        if need <= width or col.priority == 0:
            chosen = trial
        else:
            break  # never show a less important column in place of a more important one
    chosen.sort(key=COLUMNS.index)
    spare = max(0, width - (sum(c.width for c in chosen) + len(chosen) - 1))
    shares = sum(c.flex for c in chosen) or 1
    widths = {c.key: c.width + spare * c.flex // shares for c in chosen}
    # Give the rounding remainder to the first flexible column.
    left = width - (sum(widths.values()) + len(chosen) - 1)
    for c in chosen:
        if c.flex and left > 0:
            widths[c.key] += left
            break
    return [(c, widths[c.key]) for c in chosen]


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` cut (with an ellipsis) or padded to exactly ``width`` cells."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def human_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 100_000:
        return f"{ms / 1000:.2f}s"
    return f"{ms / 1000:.0f}s"


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n_f = n / 1024
        if n_f < 1024 or unit == "GB":
            return f"{n_f:.1f} {unit}" if n_f < 100 else f"{n_f:.0f} {unit}"
        n = int(n_f)
    return ""


def when(value: datetime | None, now: datetime, tz: tzinfo | None) -> str:
    """``HH:MM:SS`` today, ``MM-DD HH:MM`` before (in ``tz``; None = the local zone)."""
    if value is None:
        return ""
    local = value.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%m-%d %H:%M")


def state_class(view: JobView) -> str:
    """The component class that colours a row's state (its word and symbol say it too)."""
    if view.state != "done":
        return view.state  # queued, running
    return "ok" if view.ok else "failed"


def cell(view: JobView, key: str, now: datetime, tz: tzinfo | None,
         regions: Mapping[str, bool] | None = None) -> str:
    """One cell's text, safe to show. ``regions``: this job's region -> ok, heard so far."""
    if key == "regions":
        return region_cell(view, regions or {})
    getter = _CELLS[key]
    return printable(getter(view, now, tz))


def region_cell(view: JobView, heard: Mapping[str, bool]) -> str:
    """``2/3 ok`` for a job that named regions (``…`` while some have not reported)."""
    if view.regions == (DEFAULT_REGION,):
        return ""
    text = summary(view.regions, heard)
    return text if all(r in heard for r in view.regions) else text + " …"


_CELLS: dict[str, Callable[[JobView, datetime, tzinfo | None], object]] = {
    "state": lambda v, now, tz: state_label(v),
    "code": lambda v, now, tz: v.status_code,
    "time": lambda v, now, tz: human_ms(v.total_ms),
    "size": lambda v, now, tz: human_bytes(v.bytes),
    "url": lambda v, now, tz: mask_url(v.url),
    "title": lambda v, now, tz: v.title,
    "checked": lambda v, now, tz: when(v.checked_at, now, tz),
    "attempts": lambda v, now, tz: v.attempts,
    "error": lambda v, now, tz: v.error if not v.ok else "",
}
