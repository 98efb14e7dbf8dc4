"""Snapshots of the main screens at 80x24 and 120x40 (pytest-textual-snapshot).

Data is written through the store with fixed times, the app gets a fixed clock and UTC,
and the database shown is a fixed path: the pictures depend on nothing but the code.
Update after a deliberate change with ``pytest tests/tui --snapshot-update`` and look at
the report before committing.
"""

from __future__ import annotations

from datetime import UTC

import pytest

from tui.app import UrlTesterApp
from tui.detail import DetailScreen
from tui.grid import JobGrid

from .conftest import fixed_clock, seed, wait_for

SIZES = [(80, 24), (120, 40)]


def make(runtime) -> UrlTesterApp:
    seed(runtime.store)
    # Long intervals: nothing refreshes while the picture is taken.
    return UrlTesterApp(runtime, clock=fixed_clock, tz=UTC, poll_interval=60, status_interval=60)


async def ready(pilot) -> None:
    app = pilot.app
    grid = app.query_one(JobGrid)
    await wait_for(pilot, lambda: grid.loaded and app.status_line.counts is not None, what="first screen")
    grid.focus()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare, shown_runtime, size) -> None:
    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("down", "down")

    assert snap_compare(make(shown_runtime), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_detail_screen(snap_compare, shown_runtime, size) -> None:
    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("end", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DetailScreen)
                       and pilot.app.screen.query("Waterfall"), what="details")
        await pilot.pause()

    assert snap_compare(make(shown_runtime), terminal_size=size, run_before=run_before)


ONE_HOST = [  # URLs of one host that differ only at the end: the middle is what the grid cuts
    (f"https://reports.example/api/v2/exports/monthly/sales-summary?region={region}&format=csv",
     outcome, ok, status, total, 1200, None, error, 1)
    for region, outcome, ok, status, total, error in (
        ("north", "ok", True, 200, 120.0, None),
        ("south", "http_error", False, 500, 95.0, "HTTP 500 Internal Server Error (expected 200-399)"),
        ("east-and-west", "ok", True, 200, 101.5, None),
    )
]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_urls_of_one_host_show_their_ends(snap_compare, shown_runtime, size) -> None:
    seed(shown_runtime.store, queued=0, sample=ONE_HOST)
    app = UrlTesterApp(shown_runtime, clock=fixed_clock, tz=UTC, poll_interval=60, status_interval=60)

    async def run_before(pilot) -> None:
        await ready(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_failed_only_sorted_by_latency(snap_compare, shown_runtime) -> None:
    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("f", "s", "s")
        grid = pilot.app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.view_query.order == "latency" and grid.total == 4
                       and len(grid.window.rows) == 4, what="failed, slowest first")

    assert snap_compare(make(shown_runtime), terminal_size=(80, 24), run_before=run_before)


def test_help(snap_compare, shown_runtime) -> None:
    async def run_before(pilot) -> None:
        await ready(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make(shown_runtime), terminal_size=(80, 24), run_before=run_before)
