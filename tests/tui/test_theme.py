"""Colours come from the theme: no colour names in tui/'s Python, a theme switch recolours the
status line, and NO_COLOR in a real terminal (tmux) leaves only greys (and no crash)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from rich.color import Color as RichColor
from textual.color import Color

from db import open_store
from tests.support.services import runner_env, wait_until
from tui.status_line import StatusLine

from .conftest import seed, wait_for
from .test_app import make_app
from .test_e2e_tmux import Tmux

TUI = Path(__file__).resolve().parents[2] / "tui"
COLOUR_WORDS = {"black", "red", "green", "yellow", "blue", "magenta", "cyan", "white", "grey", "gray", "purple",
                "orange", "pink"}


def style_like_strings(path: Path) -> list[str]:
    """String constants in ``path`` that read as a rich style naming a colour."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            words = set(re.split(r"[\s_]+", node.value.lower()))
            bare = {w.removeprefix("bright").removeprefix("on") for w in words}
            if (words | bare) & COLOUR_WORDS or re.search(r"#[0-9a-f]{6}\b|\brgb\(|\bcolor\(\d", node.value.lower()):
                found.append(node.value)
    return found


def test_no_colour_names_in_the_tuis_python() -> None:
    offenders = {p.name: s for p in sorted(TUI.glob("*.py")) if (s := style_like_strings(p))}
    assert not offenders, f"use a theme variable ($success, $error, $warning, ...) in tui/styled.py: {offenders}"


async def test_a_theme_switch_recolours_the_status_line(runtime) -> None:
    seed(runtime.store)
    app = make_app(runtime)
    async with app.run_test(size=(120, 40)) as pilot:
        status = app.query_one(StatusLine)
        await wait_for(pilot, lambda: status.counts is not None, what="the counts")
        seen = {}
        for theme in ("textual-dark", "nord"):
            app.theme = theme
            await pilot.pause()
            strip = status.render_line(0)
            [ok] = [seg for seg in strip if seg.text.startswith("✓ ")]
            expected = Color.parse(app.current_theme.success)
            assert ok.style.color.triplet == expected.rich_color.triplet, theme
            seen[theme] = ok.style.color
        assert seen["textual-dark"] != seen["nord"]


def grey(params: list[int]) -> bool:
    """Whether an SGR colour (38/48;5;N or 38/48;2;R;G;B) is a grey."""
    if params[0] == 5:
        r, g, b = RichColor.from_ansi(params[1]).get_truecolor()
    else:
        r, g, b = params[1:4]
    return max(r, g, b) - min(r, g, b) <= 8


@pytest.mark.e2e
def test_no_color_shows_no_colour_in_a_real_terminal(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    store = open_store(url)
    seed(store)
    store.close()
    env = {**runner_env(url, None), "NO_COLOR": "1"}
    with Tmux(env, [sys.executable, "-m", "runner", "tui"], size=(120, 30)) as tmux:
        wait_until(lambda: "✗ http " in tmux.screen(), 30, message="the grid drawn")
        raw = tmux.capture(escapes=True)
        colours = []
        for sgr in re.findall(r"\x1b\[([0-9;]*)m", raw):
            p = [int(x) for x in sgr.split(";") if x]
            i = 0
            while i < len(p):
                if p[i] in (38, 48) and i + 1 < len(p):
                    n = 3 if p[i + 1] == 5 else 5
                    colours.append(p[i + 1:i + n])
                    i += n
                    continue
                assert not (30 <= p[i] <= 37 or 40 <= p[i] <= 47 or 90 <= p[i] <= 97), f"a colour: {sgr}"
                i += 1
        assert colours and all(grey(c) for c in colours), [c for c in colours if not grey(c)]
