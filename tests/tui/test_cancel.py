"""Cancelling from the TUI (key C): a modal offers the row's job and its batch with their
counts, and is the confirmation; Esc takes nothing back."""

from __future__ import annotations

from datetime import UTC

from db import JobFilter, NewJob
from tui.app import UrlTesterApp
from tui.choice import ChoiceScreen
from tui.grid import JobGrid

from .conftest import screen_text, wait_for

SIZE = (120, 40)


def labels(app: UrlTesterApp) -> list[str]:
    screen = app.screen
    assert isinstance(screen, ChoiceScreen)
    return [label for _, label in screen.options]


async def test_cancel_the_rows_batch_after_choosing_it_in_a_modal(runtime) -> None:
    store = runtime.store
    keep = store.create_batch("keep")
    store.insert_jobs(keep.id, [NewJob(f"https://keep.example/{i}", {}) for i in range(2)])
    wrong = store.create_batch("[red]wrong[/red] file")
    ids = store.insert_jobs(wrong.id, [NewJob(f"https://wrong.example/{i}", {}) for i in range(5)])
    app = UrlTesterApp(runtime, tz=UTC, poll_interval=0.2, status_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded and grid.total == 7, what="rows")
        assert grid.current is not None and grid.current.id == ids[-1]
        grid.focus()  # from the URL input, C would type a C

        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the cancel modal")
        assert labels(app) == [f"cancel job #{ids[-1]} (queued)",
                               "cancel 5 queued jobs of batch '[red]wrong[/red] file'",
                               "keep them (cancel nothing)"]
        await wait_for(pilot, lambda: "'[red]wrong[/red]" in screen_text(app),  # text, never markup
                       what="the modal drawn")
        await pilot.press("escape")  # Esc: nothing is taken back
        await wait_for(pilot, lambda: not isinstance(app.screen, ChoiceScreen), what="the modal closed")
        assert store.count_jobs(JobFilter(state="queued")) == 7

        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the cancel modal")
        await pilot.press("down", "enter")  # the batch
        await wait_for(pilot, lambda: store.count_jobs(JobFilter(state="cancelled")) == 5, what="the batch cancelled")
        await wait_for(pilot, lambda: "⊘ Cancelled 5 queued jobs." in screen_text(app), what="the message")
        await wait_for(pilot, lambda: "⊘ 5 cancelled" in screen_text(app), what="the status line's count")
        await wait_for(pilot, lambda: grid.window.get(0) is not None and grid.window.get(0).state == "cancelled",
                       what="the rows redrawn")
        assert "⊘ cancelled" in screen_text(app)
        assert store.count_jobs(JobFilter(state="queued", batch="keep")) == 2

        await pilot.press("C")  # the row's job and batch: nothing queued any more
        await wait_for(pilot, lambda: "Nothing queued to cancel here" in screen_text(app), what="the note")
        assert not isinstance(app.screen, ChoiceScreen)


async def test_cancel_one_job_from_the_modal(runtime) -> None:
    ids = runtime.store.insert_jobs(None, [NewJob(f"https://solo.example/{i}", {}) for i in range(3)])
    app = UrlTesterApp(runtime, tz=UTC, poll_interval=0.2, status_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        grid = app.query_one(JobGrid)
        await wait_for(pilot, lambda: grid.loaded and grid.total == 3, what="rows")
        grid.focus()
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="the cancel modal")
        assert labels(app) == [f"cancel job #{ids[-1]} (queued)", "keep them (cancel nothing)"]  # no batch
        await pilot.press("enter")
        await wait_for(pilot, lambda: runtime.store.get_job(ids[-1]).state == "cancelled", what="the job cancelled")
        assert [runtime.store.get_job(i).state for i in ids[:2]] == ["queued", "queued"]
