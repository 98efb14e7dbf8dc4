"""Pilot tests of the TUI on the embedded default: SQLite in tmp_path, checks in-process,
against a local target server."""

from __future__ import annotations

import csv
import json
from datetime import UTC

import pytest

from db import JobFilter, NewJob, StoreUnavailable, utcnow
from db import grid as grid_sql
from tui.app import UrlTesterApp
from tui.detail import DetailScreen
from tui.grid import JobGrid
from tui.url_input import UrlInput

from .conftest import fill, fixed_clock, screen_text, seed, seed_result, wait_for

SIZE = (120, 40)


def make_app(runtime, **kwargs) -> UrlTesterApp:
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("status_interval", 0.2)
    return UrlTesterApp(runtime, tz=UTC, **kwargs)


async def type_text(pilot, text: str) -> None:
    pilot.app.query_one("#urls", UrlInput).insert_text_at_cursor(text)
    await pilot.pause()


async def test_submit_valid_and_invalid(runtime, target) -> None:
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="first window")
        good, bad = target.url("/ok"), target.url("/status/500")
        await type_text(pilot, f"{good}\nftp://files.example/x  not..valid {bad}")
        await pilot.press("enter")
        await wait_for(pilot, lambda: grid.total == 2, what="two rows")
        box = app.query_one("#urls", UrlInput)
        # The invalid ones stay in the input for fixing; the valid ones are queued.
        assert box.value == "ftp://files.example/x not..valid"
        message = str(app.query_one("#message").render())
        assert "Queued 2 URLs" in message and "2 not queued" in message and "unsupported scheme 'ftp'" in message
        await wait_for(pilot, lambda: {v.state for v in grid.window.rows} == {"done"}, what="results")
        outcomes = sorted(v.outcome for v in grid.window.rows)
        assert outcomes == ["http_error", "ok"]
        text = screen_text(app)
        assert "✓ ok" in text and "✗ http " in text


async def test_multiline_paste_keeps_every_url(runtime) -> None:
    from textual.events import Paste

    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        box = app.query_one("#urls", UrlInput)
        box.post_message(Paste("a.example\nb.example\r\nc.example"))
        await pilot.pause()
        assert box.value == "a.example b.example c.example"


async def test_refresh_in_place_keeps_cursor_and_scroll(runtime) -> None:
    fill(runtime.store, 300)
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded and grid.total == 300, what="300 rows")
        grid.focus()
        await pilot.press("down", "down", "down")
        job = grid.current
        assert job is not None and grid.cursor == 3
        # Another process adds jobs: they appear at the top, the cursor stays on its job.
        runtime.store.insert_jobs(None, [NewJob(f"https://new.example/{i}", {}) for i in range(5)])
        await wait_for(pilot, lambda: grid.total == 305, what="new rows")
        assert grid.current is not None and grid.current.id == job.id
        assert grid.window.get(0).url == "https://new.example/4"
        # Scrolled down: the rows on screen stay where they are when more arrive above.
        await pilot.press("pagedown", "pagedown")
        top = grid.scroll_offset.y
        first_shown = grid.rows_in_view[0].id
        under_cursor = grid.current.id
        runtime.store.insert_jobs(None, [NewJob(f"https://newer.example/{i}", {}) for i in range(7)])
        await wait_for(pilot, lambda: grid.total == 312, what="more rows")
        await pilot.pause(0.1)
        assert grid.rows_in_view[0].id == first_shown
        assert grid.scroll_offset.y == top + 7
        assert grid.current.id == under_cursor


async def test_state_changes_in_place(runtime) -> None:
    ids = runtime.store.insert_jobs(None, [NewJob("https://a.example/", {}), NewJob("https://b.example/", {})])
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="rows")
        assert [v.state for v in grid.window.rows] == ["queued", "queued"]
        runtime.store.mark_running([(ids[0], utcnow())])
        await wait_for(pilot, lambda: "… running" in screen_text(app), what="the running row on screen")
        assert grid.window.get(1).state == "running" and "· queued" in screen_text(app)


async def test_paging_reads_only_a_window(runtime) -> None:
    ids = fill(runtime.store, 2000)
    app = make_app(runtime)
    async with app.run_test(size=(80, 24)) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="rows")
        assert grid.total == 2000
        assert len(grid.window.rows) < 100  # a few screens, never the history
        grid.focus()
        await pilot.press("end")
        await wait_for(pilot, lambda: grid.current is not None and grid.current.id == ids[0], what="last row")
        await pilot.press("home")
        await wait_for(pilot, lambda: grid.current is not None and grid.current.id == ids[-1], what="first row")
        for _ in range(5):
            await pilot.press("pagedown")
        await wait_for(pilot, lambda: grid.current is not None, what="row after paging")
        page = grid._page
        assert grid.current.id == ids[-1 - 5 * page]
        assert len(grid.window.rows) < 100


async def test_filter_failed_outcome_and_sort(runtime) -> None:
    seed(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded and grid.total == 10, what="rows")
        grid.focus()
        await pilot.press("slash", *"example/", "enter")
        await wait_for(pilot, lambda: grid.total == 7 and len(grid.window.rows) == 7, what="URL filter")
        assert all("example/" in v.url for v in grid.window.rows)
        assert "URL contains “example/”" in screen_text(app)
        await pilot.press("x")
        await wait_for(pilot, lambda: grid.total == 10, what="cleared")
        await pilot.press("f")
        await wait_for(pilot, lambda: grid.total == 4 and len(grid.window.rows) == 4, what="failed only")
        assert all(v.ok is False for v in grid.window.rows)
        await pilot.press("f", "s", "s")  # newest -> oldest -> latency
        await wait_for(pilot,
                       lambda: grid.view_query.order == "latency" and grid.total == 8 and len(grid.window.rows) == 8,
                       what="slowest first")
        times = [v.total_ms or 0 for v in grid.window.rows]
        assert times == sorted(times, reverse=True)
        await pilot.press("o")
        await pilot.pause()
        from tui.choice import ChoiceScreen

        assert isinstance(app.screen, ChoiceScreen)
        app.screen.dismiss("dns_error")
        await wait_for(pilot, lambda: grid.total == 1, what="outcome filter")
        assert grid.window.rows[0].outcome == "dns_error"


async def test_markup_and_escapes_show_literally(runtime) -> None:
    seed(runtime.store)
    app = make_app(runtime, clock=fixed_clock)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: "https://x.test/[/b]" in screen_text(app), what="rows drawn")
        text = screen_text(app)
        assert "[link=http" in text  # the title column cuts it; the detail view shows it all
        assert "https://slow.example/report?q=[red]x[/red]" in text


async def test_two_redraws_of_the_detail_at_once_do_not_collide(runtime) -> None:
    """Two reloads finishing together (results arriving while it is open): the second
    redraw used to remove the children before the first had mounted its own, and the
    first's mount then met the second's (DuplicateIds: detail-summary; seen once in CI)."""
    import asyncio

    seed(runtime.store, queued=0)
    app = make_app(runtime, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="rows")
        grid.focus()
        await pilot.press("end", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail screen")
        await wait_for(pilot, lambda: "Timing" in screen_text(app), what="details loaded")
        screen = app.screen
        await asyncio.gather(*(screen.show(screen.job, screen.results) for _ in range(3)))
        await pilot.pause()
        assert len(screen.query("#detail-summary")) == 1
        assert screen_text(app).count("Timing") == 1


async def test_detail_screen(runtime) -> None:
    ids = seed(runtime.store, queued=0)
    app = make_app(runtime, clock=fixed_clock)
    async with app.run_test(size=(120, 70)) as pilot:  # every section on screen
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="rows")
        grid.focus()
        await pilot.press("end", "enter")  # the oldest row: the first sample, with a redirect
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail screen")
        await wait_for(pilot, lambda: "Timing" in screen_text(app), what="details loaded")
        text = screen_text(app)
        assert app.screen.job.id == ids[0]
        for expected in ("https://shop.example/", "Redirects", "301 →", "TLS certificate", "CN=shop.example",
                         "Response headers", "[bold]not markup[/bold]", "dns", "connect", "tls", "wait", "transfer"):
            assert expected in text, expected
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, DetailScreen), what="back to the grid")
        # Live refresh went on while the detail view was open, and goes on after.
        runtime.store.insert_jobs(None, [NewJob("https://later.example/", {})])
        await wait_for(pilot, lambda: grid.total == 9, what="refresh after the detail view")


async def test_detail_of_a_queued_job_updates_when_done(runtime) -> None:
    ids = runtime.store.insert_jobs(None, [NewJob("https://pending.example/", {})])
    app = make_app(runtime, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded and grid.total == 1, what="row")
        grid.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "Not checked yet (queued)" in screen_text(app), what="queued detail")
        seed_result(runtime.store, ids[0])
        await wait_for(pilot, lambda: "Timing" in screen_text(app), what="detail updated")
        assert "✓ ok" in screen_text(app)


async def test_retest_row_and_failed_in_view(runtime, target) -> None:
    store = runtime.store
    ids = store.insert_jobs(None, [NewJob(target.url("/ok"), {}), NewJob(target.url("/status/503"), {})])
    runtime.intake.publish([(i, v.url, v.options)
                            for i, v in zip(ids, store.list_jobs(JobFilter(ids=tuple(ids)), order="oldest"),
                                            strict=True)])
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.total == 2 and all(v.state == "done" for v in grid.window.rows), what="done")
        grid.focus()
        await pilot.press("r")  # the newest row: /status/503
        await wait_for(pilot, lambda: grid.total == 3, what="re-test row")
        await wait_for(pilot, lambda: all(v.state == "done" for v in grid.window.rows), what="re-test done")
        assert grid.window.rows[0].url == target.url("/status/503")
        await pilot.press("R")  # two failed jobs of one failing URL: it is re-tested once
        await wait_for(pilot, lambda: grid.total == 4, what="re-test failing")
        assert "Re-testing 1 failing URL of this view, each once (1 new job)" in str(app.query_one("#message").render())
        await wait_for(pilot, lambda: all(v.state == "done" for v in grid.window.rows), what="re-test done")
        assert target.hits["/status/503"] >= 3
        await pilot.press("R")  # three failed jobs now, still one URL
        await wait_for(pilot, lambda: grid.total == 5, what="re-test failing again")
        await wait_for(pilot, lambda: "1 URL: ✗ 1 failing" not in screen_text(app)
                       and "2 URLs: ✗ 1 failing" in screen_text(app), what="URL counts in the status line")


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_export_view(runtime, tmp_path, fmt) -> None:
    seed(runtime.store)
    out = tmp_path / "exports"
    out.mkdir()
    app = make_app(runtime, clock=fixed_clock, export_dir=out)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="rows")
        grid.focus()
        await pilot.press("f")
        await wait_for(pilot, lambda: grid.total == 4, what="failed only")
        await pilot.press("e")
        await pilot.pause()
        app.screen.dismiss(fmt)
        await wait_for(pilot, lambda: getattr(app, "last_export", None) is not None, what="export")
        path = app.last_export
        assert path.parent == out
        assert str(path) in str(app.query_one("#message").render())
        if fmt == "csv":
            rows = list(csv.DictReader(path.open()))
        else:
            rows = [json.loads(line) for line in path.open()]
            assert "hops" in rows[0]
        assert len(rows) == 4 and {r["outcome"] for r in rows} == {"http_error", "dns_error", "connect_refused",
                                                                   "read_timeout"}
        # The same schema as `runner results`: each job's region (here the default one, alone).
        if fmt == "csv":
            assert {r["region"] for r in rows} == {"default"}
        else:
            assert all(list(r["regions"]) == ["default"] and r["quorum"] == "majority" for r in rows)


async def test_copy_url(runtime) -> None:
    seed(runtime.store, queued=0)
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="rows")
        grid.focus()
        await pilot.press("c")
        assert app.clipboard == "https://docs.example/guide/intro"


async def test_database_outage_banner_and_recovery(runtime, monkeypatch) -> None:
    seed(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded, what="rows")
        real_count, real_quick = runtime.store.count_jobs, grid_sql.quick_counts

        def down(*args, **kwargs):
            raise StoreUnavailable("connection refused (test)")

        monkeypatch.setattr(runtime.store, "count_jobs", down)
        monkeypatch.setattr(grid_sql, "quick_counts", down)
        banner = app.query_one("#banner")
        # What the operator reads, once the screen is laid out again with the banner on it.
        await wait_for(pilot, lambda: "Database unreachable: connection refused (test)" in screen_text(app),
                       what="the banner on screen")
        assert banner.display
        monkeypatch.setattr(runtime.store, "count_jobs", real_count)
        monkeypatch.setattr(grid_sql, "quick_counts", real_quick)
        await wait_for(pilot, lambda: not banner.display, what="recovery")
        runtime.store.insert_jobs(None, [NewJob("https://after.example/", {})])
        await wait_for(pilot, lambda: grid.total == 11, what="refresh after recovery")


async def test_pause_stops_refresh(runtime) -> None:
    seed(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded and grid.total == 10, what="rows")
        grid.focus()
        await pilot.press("p")
        assert "PAUSED" in screen_text(app)
        runtime.store.insert_jobs(None, [NewJob("https://later.example/", {})])
        await pilot.pause(0.6)
        assert grid.total == 10
        await pilot.press("p")
        await wait_for(pilot, lambda: grid.total == 11, what="resumed")


async def test_help_and_palette(runtime) -> None:
    app = make_app(runtime)
    async with app.run_test(size=(120, 80)) as pilot:  # the help's sections down to the details'
        app.query_one(JobGrid).focus()
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(app)
        assert "whose state is failing, each once" in text and "export the grid's current view" in text
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Re-test row", "Export view", "Filter by URL text", "Pause / resume refresh"} <= set(titles)


async def test_a_job_with_regions_shows_them_in_the_grid_and_side_by_side_in_the_detail(runtime) -> None:
    from db import ResultRecord

    from .conftest import FIXED_NOW, detail

    seed(runtime.store, queued=0)
    grid_before = make_app(runtime, clock=fixed_clock)
    async with grid_before.run_test(size=SIZE) as pilot:  # no job names a region: no REGIONS column
        await wait_for(pilot, lambda: grid_before.query_one(JobGrid).loaded, what="rows")
        assert "REGIONS" not in screen_text(grid_before)
    [job] = runtime.store.insert_jobs(None, [NewJob("https://multi.example/", {"regions": ["eu", "us", "ap"],
                                                                              "quorum": "majority"})])

    def record(region: str, ok: bool, total: float) -> ResultRecord:
        return ResultRecord(job_id=job, outcome="ok" if ok else "connect_timeout", ok=ok,
                            status_code=200 if ok else None,
                            total_ms=total, attempts=1, error=None if ok else "no connection within 5 s", bytes=10,
                            checked_at=FIXED_NOW, detail=detail(total), worker=f"{region}-host:1", region=region)

    runtime.store.store_results([record("eu", True, 120.0), record("us", False, 5000.0)])
    app = make_app(runtime, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: "1/3 ok …" in screen_text(app), what="the region column")
        assert "REGIONS" in screen_text(app)
        runtime.store.store_results([record("ap", True, 300.0)])
        await wait_for(pilot, lambda: "2/3 ok" in screen_text(app) and "2/3 ok …" not in screen_text(app),
                       what="the last region's result")
        grid.focus()
        await pilot.press("home", "enter")
        await wait_for(pilot, lambda: "Regions" in screen_text(app) and "ap-host:1" in screen_text(app),
                       what="the regions section")
        text = screen_text(app)
        for expected in ("quorum majority of 3: 2/3 ok", "✓ ok", "✗ connect_timeout", "no connection within 5 s",
                         "eu-host:1", "us-host:1", "dns", "connect", "transfer", "5.00s"):
            assert expected in text, expected


async def test_the_status_line_names_the_regions_with_live_workers() -> None:
    from textual.app import App

    from db import Counts
    from tui.status_line import StatusLine

    line = StatusLine("postgresql://db/urltester", "amqp://mq//", immediate=False)

    class One(App):
        def compose(self):
            yield line

    app = One()
    async with app.run_test(size=(200, 4)) as pilot:  # the line is cut (…) where it does not fit
        line.set_status(Counts(), 3, 52, ("default", "eu-west", "us-east"),
                        {"default": 12, "eu-west": 0, "us-east": 40})
        await pilot.pause()
        assert ("3 worker processes alive in default, eu-west, us-east  │  in queue default 12 · eu-west 0 · us-east 40"
                in screen_text(app))
        line.set_status(Counts(), 1, 7, ("default",), {"default": 7})  # a fleet without regions: as before
        await pilot.pause()
        assert "1 worker process alive  │  7 in queue" in screen_text(app) and " in default" not in screen_text(app)
