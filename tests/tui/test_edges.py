"""Rough edges a new user met in the TUI: the filter key from the URL input, the footer's
keys where the focus is, keys typed fast after ↓, URLs that tell rows apart, short states,
widths that follow the terminal. With Pilot, and in a real terminal (tmux) at 80 and 120."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from rich.cells import cell_len
from textual import events

from db import NewJob, ResultRecord, open_store
from tests.support.services import runner_env, wait_until
from tui.columns import layout, url_cuts
from tui.grid import JobGrid
from tui.url_input import UrlInput

from .conftest import FIXED_NOW, screen_text, wait_for
from .test_app import make_app
from .test_e2e_tmux import Tmux

BASE = "http://127.0.0.1:18556"
ALIKE = [f"{BASE}/api/v1/orders?customer=12345", f"{BASE}/api/v2/orders?customer=12345",
         f"{BASE}/site/docs/section/page1.html?utm_source=newsletter&utm_medium=email",
         f"{BASE}/site/docs/section/page2.html?utm_source=newsletter&utm_medium=email"]
TELLS = ["v1/orders", "v2/orders", "page1.html", "page2.html"]


def footer_of(screen: str) -> str:
    return next(line for line in reversed(screen.splitlines()) if "Quit" in line)


def seed_alike(store) -> None:
    b = store.create_batch("alike", now=FIXED_NOW - timedelta(minutes=5))
    ids = store.insert_jobs(b.id, [NewJob(u, {}) for u in ALIKE], now=FIXED_NOW - timedelta(minutes=4))
    store.store_results([
        ResultRecord(job_id=i, outcome="too_many_redirects" if n == 0 else "ok", ok=n != 0,
                     status_code=None if n == 0 else 200, total_ms=12.0, attempts=1,
                     error="more than 10 redirects" if n == 0 else None, final_url=None, bytes=10,
                     content_type="text/html", title="A page title", checked_at=FIXED_NOW)
        for n, i in enumerate(ids)])


@pytest.mark.parametrize("width", [30, 40, 46, 60, 72])
def test_each_cut_keeps_what_tells_the_url_apart(width: int) -> None:
    cuts = url_cuts(ALIKE, width)
    for url, tell in zip(ALIKE, TELLS, strict=True):
        assert cell_len(cuts[url]) == width
        assert tell[:5] in cuts[url] and "127.0.0.1:18556" in cuts[url], (width, cuts[url])


@pytest.mark.parametrize("width", [80, 120, 200])
def test_widths_follow_the_terminal(width: int) -> None:
    need = max(cell_len(u) for u in ALIKE)
    cols = {c.key: w for c, w in layout(width, url_need=need)}
    assert sum(cols.values()) + len(cols) - 1 == width
    assert cols["state"] == 11 and "error" in cols  # "✗ redirects" fits; the error shows at 80
    if width >= 120:
        assert "title" in cols
    if width == 200:
        assert cols["url"] >= need  # every URL whole; the rest goes to TITLE and ERROR
        assert cols["title"] > 12 and cols["error"] > 14


async def test_filter_from_the_url_input_and_the_footer_shows_what_works_there(runtime) -> None:
    app = make_app(runtime)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: "Quit" in screen_text(app), what="the footer")
        footer = footer_of(screen_text(app))
        assert "^f Filter" in footer and "Queue" in footer and "Grid" in footer
        for letter_key in ("Failed", "Sort", "Pause", "Re-test", "Export"):  # letters type in the input
            assert letter_key not in footer, footer
        await pilot.press("ctrl+f", *"orders")
        assert app.focused is app.query_one("#filter")
        assert app.query_one("#filter").value == "orders" and app.query_one("#urls", UrlInput).value == ""
        await pilot.press("enter")  # to the grid: the letter keys work and the footer says so
        await wait_for(pilot, lambda: "Failed" in footer_of(screen_text(app)), what="the grid's footer")


async def test_keys_typed_fast_after_down_reach_the_grid(runtime) -> None:
    seed_alike(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=(120, 30)) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.total == 4, what="four rows")
        # As a terminal delivers them: all queued before the first is handled.
        for key, char in (("down", None), ("f", "f")):
            event = events.Key(key, char)
            event.set_sender(app)
            app._driver.send_message(event)
        await wait_for(pilot, lambda: app.view_query.flt.failed, what="f toggling failed-only on the grid")
        assert app.query_one("#urls", UrlInput).value == ""
        assert app.focused is grid


@pytest.mark.e2e
@pytest.mark.parametrize("size", [(80, 24), (120, 30)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_in_a_real_terminal(tmp_path, size) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    store = open_store(url)
    seed_alike(store)
    store.close()
    with Tmux(runner_env(url, None), [sys.executable, "-m", "runner", "tui"], size=size) as tmux:
        wait_until(lambda: "page2" in tmux.screen() and "Quit" in tmux.screen(), 30, message="the grid drawn")
        screen = tmux.screen()
        rows = [line for line in screen.splitlines() if "127.0.0.1:18556" in line]
        assert len(rows) == 4, screen
        for tell in TELLS:  # each row shows the part that tells it from the others
            assert sum(tell in row for row in rows) == 1, (tell, screen)
        assert any("✗ redirects" in row for row in rows)
        assert "^f Filter" in footer_of(screen)
        tmux.key("Down", "f")  # typed at once: f reaches the grid (failed only), not the input
        wait_until(lambda: "failed only" in tmux.screen(), 60, message="failed only")
        assert "Type or paste URLs" in tmux.screen()  # the input is still empty
        tmux.key("i", "C-f")  # back to the input; ^f opens the filter from there
        tmux.type("page2")
        tmux.key("Enter")
        wait_until(lambda: "page2" in tmux.screen() and "v1/orders" not in tmux.screen(), 60,
                   message="the filter applied")
        tmux.key("C-q")


async def test_the_tui_says_at_once_that_the_broker_is_unreachable(tmp_path) -> None:
    import socket

    from runner.jobs.runtime import Runtime
    from runner.jobs.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    rt = Runtime(Settings(database_url=f"sqlite:///{tmp_path}/t.db", broker_url=f"amqp://guest:guest@127.0.0.1:{port}//",
                          publish_timeout=8))
    try:
        app = make_app(rt, status_interval=60)
        async with app.run_test(size=(120, 30)) as pilot:
            app.query_one("#urls", UrlInput).insert_text_at_cursor("http://127.0.0.1:9/x")
            await pilot.press("enter")
            message = app.query_one("#message")
            await wait_for(pilot, lambda: "keeps trying for 8 s" in str(message.render()), what="the warning")
            assert "unreachable" in str(message.render())
            assert any(w.group == "submit" and not w.is_finished for w in app.workers)  # said while it tries
            await wait_for(pilot, lambda: "Recorded, but the broker is unreachable" in str(message.render()), 30,
                           what="the end of the retries")
    finally:
        rt.close()
