"""Pilot tests of the by-URL view (u) and the URL history in the detail (issues 21 and 22):
one row per URL however many jobs it has, the change filter since the last batch, re-tests
of each URL once, and a title or URL holding markup shown as text."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest
from textual.widgets import Sparkline

from db import JobFilter, NewJob, ResultRecord, Store, open_store, utcnow
from tests.support.services import runner_env, wait_until
from tui.app import UrlTesterApp
from tui.detail import DetailScreen
from tui.url_grid import UrlGrid

from .conftest import FIXED_NOW, fixed_clock, screen_text, wait_for
from .test_e2e_tmux import Tmux

MARKUP_URL = "https://x.test/[/b]"
MARKUP_TITLE = "[link=https://evil.example]click[/link] [bold]me"

# url -> outcomes of five nightly batches (True: ok): the last night's change is the filter's.
NIGHTS = {
    "https://stable.example/": [True] * 5,
    "https://broke.example/": [True, True, True, True, False],  # new failure last night
    "https://back.example/": [False, False, True, False, True],  # recovered last night
    "https://down.example/": [False] * 5,  # still failing
    MARKUP_URL: [True] * 5,
}


def nights(store: Store, n: int = 5, *, base: datetime = FIXED_NOW) -> dict[str, list[int]]:
    """Five nightly batches, one check of each URL a night; returns each URL's job ids."""
    ids: dict[str, list[int]] = {u: [] for u in NIGHTS}
    for night in range(n):
        at = base - timedelta(days=n - 1 - night, hours=2)
        batch = store.create_batch("nightly", now=at)
        urls = list(NIGHTS)
        job_ids = store.insert_jobs(batch.id, [NewJob(u, {}) for u in urls], now=at)
        records = []
        for k, (url, job_id) in enumerate(zip(urls, job_ids, strict=True)):
            ok = NIGHTS[url][night]
            ids[url].append(job_id)
            records.append(ResultRecord(
                job_id=job_id, outcome="ok" if ok else "http_error", ok=ok, status_code=200 if ok else 503,
                total_ms=100.0 + 50 * night + k, attempts=1, error=None if ok else "HTTP 503 [red]down[/red]",
                final_url=url, bytes=10, content_type="text/html",
                title=MARKUP_TITLE if url == MARKUP_URL else f"Title of {url[8:]}",
                checked_at=at + timedelta(minutes=1, seconds=k)))
        store.store_results(records)
    return ids


def make_app(runtime, **kwargs) -> UrlTesterApp:
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("status_interval", 0.2)
    return UrlTesterApp(runtime, tz=UTC, clock=fixed_clock, **kwargs)


async def by_url(pilot, app: UrlTesterApp) -> UrlGrid:
    grid = app.query_one(UrlGrid)
    app.screen.set_focus(app.grid)
    await pilot.press("u")
    await wait_for(pilot, lambda: grid.display and grid.loaded, what="the by-URL view")
    return grid


async def test_one_row_per_url_with_state_uptime_and_trend(runtime) -> None:
    nights(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=(160, 30)) as pilot:  # wide: TITLE shows the whole markup title
        grid = await by_url(pilot, app)
        assert grid.page.total == 5  # 25 jobs, 5 URLs
        await wait_for(pilot, lambda: "https://down.example/" in screen_text(app), what="rows drawn")
        text = screen_text(app)
        assert "By URL: all URLs · failing first · 5 URLs" in text
        for header in ("STATE", "SINCE", "LAST", "UPTIME", "TREND", "URL", "TITLE"):
            assert header in text, header
        lines = {line.split("│")[0] for line in text.splitlines()}
        down = next(line for line in lines if "down.example" in line)
        assert "✗ failing" in down and "0.0%" in down and "503" in down
        stable = next(line for line in lines if "stable.example" in line)
        assert "✓ ok" in stable and "100.0%" in stable and "Title of stable.example/" in stable
        assert any(ch in stable for ch in "▁▂▃▄▅▆▇█")  # the trend of its five checks
        # Failing first: the two failing URLs are the first two rows.
        assert {r.view.url for r in grid.page.rows[:2]} == {"https://down.example/", "https://broke.example/"}
        # Markup in a URL or a title is text.
        assert MARKUP_URL in text
        assert MARKUP_TITLE[:36] in text  # cut to its column, as text
        # u goes back to the jobs, which stayed as they were.
        await pilot.press("u")
        await wait_for(pilot, lambda: app.grid.display and "25 rows" in screen_text(app), what="the job view")


async def test_change_filter_since_the_last_batch(runtime) -> None:
    nights(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=(120, 30)) as pilot:
        grid = await by_url(pilot, app)
        shown = []
        for _ in range(4):
            await pilot.press("n")
            await wait_for(pilot, lambda: grid.page.query == app.url_query, what="filtered")
            shown.append((app.url_query.change, sorted(r.view.url for r in grid.page.rows)))
        assert shown == [
            ("new_failure", ["https://broke.example/"]),
            ("recovered", ["https://back.example/"]),
            ("still_failing", ["https://down.example/"]),
            (None, sorted(NIGHTS)),
        ]
        await pilot.press("n")
        await wait_for(pilot, lambda: "new failure since the last batch" in screen_text(app), what="the view bar")
        await pilot.press("o")  # a job view's filter: said, not applied behind the scenes
        await wait_for(pilot, lambda: "o (one outcome) works in the job view" in screen_text(app), what="the message")
        assert app.view_query.flt.outcome is None


async def test_retest_from_the_url_view_checks_each_url_once(runtime) -> None:
    nights(runtime.store)
    store = runtime.store
    app = make_app(runtime)
    app.runtime.intake.publish = lambda jobs: None  # recorded, never checked: count the jobs made
    async with app.run_test(size=(120, 30)) as pilot:
        grid = await by_url(pilot, app)
        before = len(store.list_jobs(JobFilter(), limit=1000))
        await pilot.press("R")  # the two failing URLs, five failed jobs between them
        await wait_for(pilot, lambda: "Re-testing 2 failing URLs" in screen_text(app), what="re-test")
        jobs = store.list_jobs(JobFilter(), limit=1000)
        made = sorted(j.url for j in jobs[: len(jobs) - before])
        assert made == ["https://broke.example/", "https://down.example/"]
        # r: the row's URL, once.
        row = grid.current
        assert row is not None
        await pilot.press("r")
        await wait_for(pilot, lambda: len(store.list_jobs(JobFilter(), limit=1000)) == before + 3, what="re-test row")
        assert store.list_jobs(JobFilter(), limit=1)[0].url == row.view.url


async def test_url_detail_shows_its_history(runtime) -> None:
    nights(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=(120, 50)) as pilot:
        grid = await by_url(pilot, app)
        index = next(i for i, r in enumerate(grid.page.rows) if r.view.url == "https://back.example/")
        grid.move_cursor(row=index)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await wait_for(pilot, lambda: "URL history" in screen_text(app), what="history")
        text = screen_text(app)
        assert "✓ ok since 2026-03-14 10:01:02" in text
        assert "40.00% of 5 checks in 30 days" in text
        assert "p50 " in text and "p95 " in text
        assert "✗✗✓✗✓  (oldest → newest)" in text
        assert "failing → ok  recovered" in text
        assert "ok → failing  new_failure  http_error 503" in text
        assert " " * 18 + "HTTP 503 [red]down[/red]" in text.splitlines()[text.splitlines().index(
            next(line for line in text.splitlines() if "new_failure  http_error 503" in line)) + 1]
        assert len(app.screen.query(Sparkline)) == 1
        assert app.screen.query_one(Sparkline).data and len(app.screen.query_one(Sparkline).data) == 5


@pytest.mark.e2e
@pytest.mark.parametrize("size", [(80, 45), (120, 45)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_by_url_and_history_in_a_real_terminal(tmp_path, size) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    store = open_store(url)
    nights(store, base=utcnow())
    store.close()
    with Tmux(runner_env(url, None), [sys.executable, "-m", "runner", "tui"], size=size) as tmux:
        wait_until(lambda: "25 rows" in tmux.screen() and "Quit" in tmux.screen(), 30, message="the job grid")
        tmux.key("Down")
        wait_until(lambda: "u By URL" in tmux.screen(), 60, message="u in the grid's footer")
        tmux.key("u")
        wait_until(lambda: "By URL: all URLs · failing first · 5 URLs" in tmux.screen()
                   and "stable.example" in tmux.screen(), 60, message="the by-URL view")
        screen = tmux.screen()
        lines = screen.splitlines()
        assert all(len(line) <= size[0] for line in lines)
        for u in NIGHTS:  # one row per URL, however many jobs
            assert sum(u in line for line in lines) == 1, (u, screen)
        down = next(line for line in lines if "down.example" in line)
        assert "✗ failing" in down and "0.0%" in down
        assert any(ch in down for ch in "▁▂▃▄▅▆▇█")
        assert "5 URLs: ✗ 2 failing" in screen
        tmux.key("n")  # new failures since the last batch
        wait_until(lambda: "new failure since the last batch" in tmux.screen() and "· 1 URL" in tmux.screen()
                   and "down.example" not in tmux.screen(), 60, message="the change filter")
        assert "broke.example" in tmux.screen() and "down.example" not in tmux.screen()
        tmux.key("Enter")
        # The detail draws the history's figures first and its Sparkline a moment later.
        wait_until(lambda: "URL history" in tmux.screen() and "changes" in tmux.screen()
                   and "Latency over 30 days" in tmux.screen(), 60, message="the history detail")
        screen = tmux.screen()
        assert "✗ failing since" in screen
        assert "80.00% of 5 checks in 30 days" in screen
        assert "✓✓✓✓✗  (oldest → newest)" in screen
        assert "ok → failing  new_failure  http_error 503" in screen
        assert "HTTP 503 [red]down[/red]" in screen
        assert "Latency over 30 days" in screen
        tmux.key("Escape")  # back (alone: Escape then a letter at once reads as alt+letter)
        wait_until(lambda: "By URL: new failure" in tmux.screen(), 60, message="back to the by-URL view")
        tmux.key("n", "n", "n")  # the filter round to all URLs
        # The title changes before the rows are read again: wait for both. Markup in a URL is text.
        wait_until(lambda: "By URL: all URLs" in tmux.screen() and MARKUP_URL in tmux.screen(), 60,
                   message=f"all URLs again, {MARKUP_URL} shown as text")
        tmux.key("C-q")


async def test_only_the_rows_on_screen_are_read_and_paging_reads_the_next(runtime) -> None:
    from .conftest import fill

    fill(runtime.store, 100)  # 100 URLs, one check each
    app = make_app(runtime)
    async with app.run_test(size=(120, 30)) as pilot:
        grid = await by_url(pilot, app)
        await wait_for(pilot, lambda: grid.page.total == 100 and grid.size.height > 1
                       and len(grid.page.rows) == grid.size.height - 1, what="a screenful")
        page = len(grid.page.rows)
        assert page < 30  # a screenful, not the view
        first = [r.view.url for r in grid.page.rows]
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: grid.page.offset == page, what="the next page")
        assert not {r.view.url for r in grid.page.rows} & set(first)
        assert f"{page + 1}–{2 * page} of 100 URLs" in screen_text(app)
        await pilot.press("end")
        await wait_for(pilot, lambda: grid.page.offset == 100 - page, what="the last page")
        assert grid.cursor_row == page - 1
        await pilot.press("down")  # at the end: stays
        await pilot.pause()
        assert grid.page.offset == 100 - page
        await pilot.press("home")
        await wait_for(pilot, lambda: grid.page.offset == 0 and grid.cursor_row == 0, what="the first page")
        grid.move_cursor(row=page - 1)
        await pilot.press("down")  # past the last row on screen: one row on
        await wait_for(pilot, lambda: grid.page.offset == 1, what="scrolled by one")
        assert grid.current is not None and grid.current.view.url == grid.page.rows[-1].view.url
