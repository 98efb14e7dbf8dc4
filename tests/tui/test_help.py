"""The help screen is made from the bindings: every key of every owner is in it, and a new
binding appears without touching the help."""

from __future__ import annotations

from pathlib import Path

from textual.binding import Binding

import tui.app
from tui.app import UrlTesterApp
from tui.detail import DetailScreen
from tui.grid import JobGrid
from tui.help import HelpScreen, help_sections, help_text
from tui.url_input import UrlInput

from .conftest import screen_text, wait_for
from .test_app import make_app


async def test_every_binding_is_in_the_help(runtime) -> None:
    app = make_app(runtime)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one(JobGrid).focus()
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help screen")
        plain = help_text(app.screen.sections).plain
        for owner in (UrlTesterApp, JobGrid, UrlInput, DetailScreen):
            for binding in owner.BINDINGS:
                assert binding.tooltip, f"{owner.__name__} {binding.key}: give it a tooltip (the help's text)"
                assert binding.tooltip in plain, binding
        lines = {line.strip() for line in plain.splitlines()}
        assert any(line.startswith("↑ k") and "cursor up" in line for line in lines)
        assert any(line.startswith("^q") and line.endswith("quit") for line in lines)
        assert any(line.startswith("^p") and "command palette" in line for line in lines)
        assert "queue every valid URL typed or pasted" in screen_text(app)


async def test_a_new_binding_shows_in_the_help_without_editing_it(runtime) -> None:
    class WithExtra(UrlTesterApp):
        CSS_PATH = str(Path(tui.app.__file__).with_name("app.tcss"))
        BINDINGS = [*UrlTesterApp.BINDINGS, Binding("z", "noop", "Zoom", tooltip="zoom the grid (a key added later)")]

    app = WithExtra(runtime)
    async with app.run_test(size=(120, 40)):
        rows = dict(next(rows for title, rows in help_sections(app) if title.startswith("Everywhere")))
        assert rows["z"] == "zoom the grid (a key added later)"
