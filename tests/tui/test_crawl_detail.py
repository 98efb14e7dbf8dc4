"""The TUI's detail of a crawl's result shows where the URL is linked from, as text."""

from __future__ import annotations

from db import NewJob
from db.crawls import Crawl, claim_urls, create_crawl
from tui.detail import DetailScreen
from tui.grid import JobGrid

from .conftest import fixed_clock, screen_text, seed_result, wait_for
from .test_app import SIZE, make_app


async def test_a_crawl_results_detail_says_where_it_is_linked_from(runtime) -> None:
    store = runtime.store
    batch = store.create_batch("crawl")
    create_crawl(store, Crawl(batch_id=batch.id, roots=("https://site.example/",), scope="host", depth=3,
                              max_urls=100, robots=True))
    broken = "https://site.example/gone.html"
    claim_urls(store, batch.id, [(broken, 1)], [(broken, "https://site.example/", "[bold]the old page[/]"),
                                               (broken, "https://site.example/about.html", "")])
    ids = store.insert_jobs(batch.id, [NewJob(broken, {})])
    seed_result(store, ids[0])
    app = make_app(runtime, clock=fixed_clock)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded and grid.total == 1, what="row")
        grid.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen) and "Linked from" in screen_text(app),
                       what="the referrers")
        text = screen_text(app)
        assert 'https://site.example/  "[bold]the old page[/]"' in text  # markup shown as written
        assert "https://site.example/about.html" in text
