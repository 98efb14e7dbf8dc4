"""The grid's columns: the URL gets the spare width first and is cut in the middle, and a
typed URL's distinguishing end shows at 80 and 120 columns."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from rich.cells import cell_len

from tui.app import UrlTesterApp
from tui.columns import URL_MOST, URL_WANT, fit_middle, layout
from tui.grid import JobGrid

from .conftest import screen_text, wait_for
from .test_app import make_app, type_text

LONG = "https://shop.example/catalogue/category/shoes/running/product?id=4711&colour=blue"


def widths(width: int) -> dict[str, int]:
    return {c.key: w for c, w in layout(width)}


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160, 200, 300])
def test_layout_fills_the_width_exactly(width: int) -> None:
    cols = layout(width)
    assert sum(w for _, w in cols) + len(cols) - 1 == width


def test_the_url_gets_the_spare_width_first() -> None:
    for width in (80, 120):
        w = widths(width)
        assert w["url"] >= URL_WANT, (width, w)
        assert w["url"] > max(v for k, v in w.items() if k != "url"), (width, w)
        assert w.get("title", 12) == 12 and w.get("error", 14) == 14  # the others keep their minimum
    wide = widths(200)
    assert wide["url"] >= URL_MOST  # only then do TITLE and ERROR grow
    assert wide["title"] > 12 and wide["error"] > 14


def test_a_long_url_is_cut_in_the_middle_keeping_host_and_end() -> None:
    cut = fit_middle(LONG, 46)
    assert cell_len(cut) == 46 and "…" in cut
    assert cut.startswith("https://shop.example/") and cut.endswith("id=4711&colour=blue")
    short = fit_middle("https://a.example/x", 30)
    assert short == "https://a.example/x".ljust(30)
    # On a narrow column the start keeps half at most, and the end still shows.
    assert fit_middle(LONG, 24).endswith("colour=blue") and fit_middle(LONG, 24).startswith("https://sho")


@pytest.mark.parametrize("text", ["https://例え.example/パス/とても長いパス/終わり?q=値",
                                  "http://x/" + "é" * 80 + "?end=1"])
@pytest.mark.parametrize("width", [3, 9, 20, 33])
def test_middle_cut_is_exact_in_cells_for_wide_and_combined_characters(text: str, width: int) -> None:
    assert cell_len(fit_middle(text, width)) == width


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_typed_urls_of_one_host_show_what_tells_them_apart(runtime, target, size) -> None:
    """Typed into the input and checked in-process: every row's end (the query) is on screen."""
    urls = [target.url(f"/ok?report=monthly-sales&region={region}") for region in ("north", "south", "east-and-west")]
    app: UrlTesterApp = make_app(runtime)
    async with app.run_test(size=size) as pilot:
        await type_text(pilot, " ".join(urls))
        await pilot.press("enter")
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.total == 3 and all(v.state == "done" for v in grid.window.rows), 20,
                       what="three checked rows")
        await wait_for(pilot, lambda: "region=north" in screen_text(app), what="rows drawn")
        text = screen_text(app)
        rows = [line for line in text.splitlines() if "✓ ok" in line]
        assert len(rows) == 3, text
        for region in ("north", "south", "east-and-west"):
            assert sum(f"region={region}" in row for row in rows) == 1, (region, text)
        host = urlsplit(target.base).netloc
        assert all(host in row for row in rows), text  # and the host, from the start
