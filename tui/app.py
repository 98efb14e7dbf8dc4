"""UrlTesterApp: type URLs at the top, watch their results arrive in the grid below.

It gets a :class:`runner.jobs.runtime.Runtime` handed in and never builds connections itself.
Every database or broker call runs in a thread worker (``@work(thread=True)``) and reports
back with ``call_from_thread`` or a message; the event loop only draws.

Live refresh: a worker waits on the store's change feed (PostgreSQL LISTEN/NOTIFY; SQLite
in-process wake-ups plus ``data_version`` polling) and asks the grid to re-read the rows on
screen; every ``poll_interval`` seconds it re-reads anyway, in case a notification was lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from db import ORDERS, JobFilter, JobView, StoreUnavailable, utcnow
from db import grid as grid_sql
from db import urls as urls_sql
from runner.errors import BrokerError, ConfigError
from runner.jobs.report import OUTCOMES
from runner.jobs.urls import split_input
from runner.text import mask_url, printable

from . import cancel
from .banner import Banner
from .choice import ChoiceScreen
from .detail import DetailScreen
from .grid import JobGrid
from .help import HelpScreen, help_sections
from .status_line import StatusLine
from .styled import FAILED, MUTED, OK, WARNING, Styled, styled
from .url_grid import UrlGrid
from .url_input import UrlInput
from .url_rows import CHANGES, SORT_LABELS, SORTS, UrlQuery
from .view_bar import ViewBar
from .window import Query

if TYPE_CHECKING:
    from runner.jobs.runtime import Runtime, SubmitReport

SHOWN_REJECTIONS = 3
UNPUBLISHED_PAGE = 5000  # jobs sent per round when the broker is back
RETEST_LIMIT = 100_000  # re-test at most this many URLs (or read this many failed jobs) at once


class UrlTesterApp(App[None]):
    """The operator's terminal UI."""

    CSS_PATH = "app.tcss"
    TITLE = "urltester"
    ENABLE_COMMAND_PALETTE = True

    # The help screen (?) is made from these: the tooltip is its long description.
    BINDINGS = [
        # Filter and help have a key that is no URL character (^f, F1): they work from the URL
        # input too, where / and ? are typed. The footer shows those; the help lists both.
        # Hazard: keys typed right after ↓ or ^f are queued before the focus moves, and a
        # key goes to whoever has the focus when the app forwards it. These two are
        # priority bindings (the app handles them before forwarding anything), so the focus
        # has moved by the time the next key is forwarded.
        Binding("down", "focus_grid", "Grid", priority=True, tooltip="from the URL input to the grid"),
        Binding("ctrl+f", "filter", "Filter", priority=True,
                tooltip="filter by text in the URL, in the database (Enter applies, Esc leaves); from anywhere"),
        Binding("slash", "filter", "Filter", show=False, tooltip="filter (from the grid)"),
        Binding("f1,question_mark", "help", "Help", tooltip="every key (this screen)"),
        # One key, two labels: the footer says where u goes (Textual picks the enabled one).
        Binding("u", "toggle_urls", "By URL", tooltip="by URL (one row per URL: state, uptime, trend) / by job"),
        Binding("u", "toggle_jobs", "By job", tooltip="by job (one row per check) / by URL"),
        Binding("f", "toggle_failed", "Failed", tooltip="failed only, on / off"),
        Binding("s", "cycle_sort", "Sort", tooltip="sort: newest, oldest, slowest, status code, last checked"),
        Binding("p", "toggle_pause", "Pause", tooltip="pause / resume live refresh"),
        Binding("r", "retest", "Re-test", tooltip="re-test the row's URL (once)"),
        Binding("e", "export", "Export", tooltip="export the current view to CSV or JSON"),
        Binding("o", "pick_outcome", "Outcome", show=False, tooltip="only one outcome…"),
        Binding("b", "pick_batch", "Batch", show=False, tooltip="only one batch…"),
        Binding("n", "cycle_change", "Changes", show=False,
                tooltip="by URL: new failures, recovered, still failing since the last batch, or all"),
        Binding("x", "clear_filters", "Clear filters", show=False, tooltip="clear every filter"),
        Binding("R", "retest_failed", "Re-test failing", show=False,
                tooltip="re-test every URL of the current view whose state is failing, each once"),
        Binding("C", "cancel_jobs", "Cancel", show=False,
                tooltip="cancel queued jobs: the row's or its batch's (asks first)"),
        Binding("c", "copy_url", "Copy URL", show=False, tooltip="copy the URL to the clipboard"),
        Binding("i", "focus_input", "URL input", show=False, tooltip="go to the URL input"),
        Binding("escape", "escape", "Back", show=False, tooltip="back / close"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="quit"),
    ]

    # Actions whose only keys are letters: in an input those keys type, so the footer does
    # not offer them there (it shows the keys that work where the focus is).
    LETTER_ACTIONS = frozenset({"toggle_failed", "cycle_sort", "toggle_pause", "retest", "export", "toggle_urls",
                                "toggle_jobs"})

    def __init__(self, runtime: Runtime, *, clock: Callable[[], datetime] = utcnow, tz: tzinfo | None = None,
                 poll_interval: float = 1.0, status_interval: float = 2.0, export_dir: Path | None = None) -> None:
        super().__init__()
        self.runtime = runtime
        self.clock = clock
        self.tz = tz
        self.poll_interval = poll_interval
        self.status_interval = status_interval
        self.export_dir = export_dir
        self.paused = False
        self.view_query = Query()
        self.url_query = UrlQuery()
        self.by_url = False  # the by-URL view is shown (u toggles)
        self._unsent = False  # jobs recorded while the broker was down, to send when it is back

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.LETTER_ACTIONS and isinstance(self.focused, Input):
            return False
        if action == "focus_grid":  # ↓ leaves the URL input; elsewhere it is the grid's own
            return isinstance(self.focused, UrlInput)
        if action in ("toggle_urls", "toggle_jobs"):
            return self.by_url == (action == "toggle_jobs")
        return True

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Kept as attributes: ``query_one`` searches the screen on top, which may be a detail view.
        settings = self.runtime.settings
        self.banner = Banner(id="banner")
        self.urls = UrlInput(placeholder="Type or paste URLs and press Enter (e.g. example.com "
                                         "https://example.org/health)",
                             id="urls")
        self.message = Static(styled("Enter queues the URLs · ↓ moves to the grid · ^f filters · F1 shows every key",
                                     MUTED),
                              id="message")
        self.view_bar = ViewBar(id="view-bar")
        self.filter_box = Input(placeholder="Filter: text in the URL (Enter to apply, Esc to leave)", id="filter")
        self.grid = JobGrid(self.runtime.store, clock=self.clock, tz=self.tz, id="grid")
        self.url_grid = UrlGrid(self.runtime.store, clock=self.clock, tz=self.tz, id="url-grid")
        self.status_line = StatusLine(settings.database_shown, settings.broker_shown, settings.immediate, id="status")
        yield self.banner
        yield self.urls
        yield self.message
        yield self.view_bar
        yield self.filter_box
        yield self.grid
        yield self.url_grid
        yield self.status_line
        yield Footer()

    def on_mount(self) -> None:
        self.filter_box.display = False
        self.url_grid.display = False
        self.view_bar.show(self.view_query, paused=False)
        self.urls.focus()
        self.watch_changes()
        self.watch_status()

    # ------------------------------------------------------------------ live refresh

    @work(thread=True, group="listen", exit_on_error=False)
    def watch_changes(self) -> None:
        """Worker thread: wake the grid when jobs or results change, or every poll interval."""
        worker = get_current_worker()
        store = self.runtime.store
        listener = None
        last_poll = time.monotonic()
        backoff = 0.5
        while not worker.is_cancelled:
            changed = False
            try:
                if listener is None:
                    listener = store.listener()
                # Short slices, so the worker ends promptly when the app quits.
                changed = listener.wait(min(0.25, self.poll_interval))
                backoff = 0.5
            except Exception:  # noqa: BLE001 - the database went away: the grid's fetch reports it
                if listener is not None:
                    try:
                        listener.close()
                    except Exception:  # noqa: BLE001
                        pass
                listener = None
                worker.cancelled_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                changed = True  # poll: the grid's fetch will say whether it is back
            now = time.monotonic()
            if changed or now - last_poll >= self.poll_interval:
                last_poll = now
                self.call_from_thread(self._data_changed)
        if listener is not None:
            listener.close()

    def _data_changed(self) -> None:
        if self.paused:
            return
        self._shown_grid().reload()
        if isinstance(self.screen, DetailScreen):
            self.screen.changed()

    @work(thread=True, group="status", exit_on_error=False)
    def watch_status(self) -> None:
        """Worker thread: counts, heartbeats and the broker's health, every status interval."""
        worker = get_current_worker()
        rt = self.runtime
        last_ping = 0.0
        depth: int | None = None
        depths: dict[str, int] = {}
        while not worker.is_cancelled:
            try:
                now = self.clock()
                counts = grid_sql.quick_counts(rt.store, now=now)
                url_states = urls_sql.state_counts(rt.store)
                beats = rt.store.workers(now=now)
                workers = len(beats)
                regions = tuple(sorted(rt.live_regions(beats), key=lambda r: (r != "default", r)))
                self.call_from_thread(self._problem, "database", None)
            except StoreUnavailable as exc:
                self.call_from_thread(self._problem, "database", str(exc))
            except Exception as exc:  # noqa: BLE001 - shown, never fatal
                self.call_from_thread(self._problem, "database", f"{type(exc).__name__}: {exc}")
            else:
                if time.monotonic() - last_ping > 5:
                    last_ping = time.monotonic()
                    try:
                        depths = {r: d.ready for r, d in rt.queue_depths(regions).items()}
                        depth = sum(depths.values())
                        self.call_from_thread(self._problem, "broker", None)
                        if self._unsent:
                            self._send_unsent()
                    except BrokerError as exc:
                        depth, depths = None, {}
                        self.call_from_thread(self._problem, "broker", str(exc))
                self.call_from_thread(self._show_status, counts, workers, depth, regions, depths, url_states)
            worker.cancelled_event.wait(self.status_interval)

    def _show_status(self, counts: object, workers: int, depth: int | None, regions: tuple[str, ...] = (),
                     depths: dict[str, int] | None = None, url_states: dict[str, int] | None = None) -> None:
        # counts: db.Counts, typed loosely for the thread worker
        self.status_line.set_status(counts, workers, depth, regions, depths, url_states)  # type: ignore[arg-type]

    def _send_unsent(self) -> None:
        """Worker thread: publish the jobs recorded while the broker was down."""
        sent = self.runtime.intake.republish(limit=UNPUBLISHED_PAGE)
        if sent:
            self.call_from_thread(self._say, f"The broker is back: sent {sent:,} waiting job(s).")
        self._unsent = sent >= UNPUBLISHED_PAGE

    def _problem(self, service: str, message: str | None) -> None:
        self.banner.set_problem(service, message)

    # ------------------------------------------------------------------ grid events

    @on(JobGrid.Fetched)
    def _fetched(self, event: JobGrid.Fetched) -> None:
        if not self.by_url:
            self.view_bar.show(total=event.total)
        self._problem("database", None)

    @on(JobGrid.FetchFailed)
    def _fetch_failed(self, event: JobGrid.FetchFailed) -> None:
        self._problem("database", event.error)

    @on(JobGrid.Activated)
    def _activated(self, event: JobGrid.Activated) -> None:
        self.push_screen(DetailScreen(event.job, self.tz))

    @on(UrlGrid.Fetched)
    def _urls_fetched(self, event: UrlGrid.Fetched) -> None:
        page = event.page
        self.view_bar.show_urls(self.url_query, page.total, page.offset, len(page.rows), page.batch)
        self._problem("database", None)

    @on(UrlGrid.FetchFailed)
    def _urls_fetch_failed(self, event: UrlGrid.FetchFailed) -> None:
        self._problem("database", event.error)

    @on(UrlGrid.Activated)
    def _url_activated(self, event: UrlGrid.Activated) -> None:
        if event.row.job is None:
            self._say("This URL has no check yet: its history starts with its first.")
            return
        self.push_screen(DetailScreen(event.row.job, self.tz))

    def _shown_grid(self) -> JobGrid | UrlGrid:
        return self.url_grid if self.by_url else self.grid

    def action_toggle_jobs(self) -> None:
        """Back from the by-URL view to the job view (the same key, u)."""
        self.action_toggle_urls()

    def action_toggle_urls(self) -> None:
        """Switch between the job view and the by-URL view (each keeps its filters)."""
        self.by_url = not self.by_url
        self.refresh_bindings()  # the footer's u: "By URL" or "By job"
        self.grid.display = not self.by_url
        self.url_grid.display = self.by_url
        box = self.filter_box
        box.value = (self.url_query.text if self.by_url else self.view_query.flt.text) or ""
        box.display = bool(box.value)
        if self.by_url:
            self.view_bar.show_urls(self.url_query, None)
            self.call_after_refresh(self.url_grid.reload)  # once it has its size: a page is a screenful
        else:
            self.view_bar.show(self.view_query, total=None)
            self.grid.reload()
        if self.focused is not self.urls and self.focused is not box:
            self.screen.set_focus(self._shown_grid())

    # ------------------------------------------------------------------ submitting

    @on(Input.Submitted, "#urls")
    def _submit(self, event: Input.Submitted) -> None:
        urls = split_input(event.value)
        if not urls:
            return
        event.input.value = ""
        self._say(f"Submitting {len(urls):,} URL{'s' if len(urls) != 1 else ''}…")
        self.submit_urls(urls)

    @work(thread=True, group="submit", exit_on_error=False)
    def submit_urls(self, urls: list[str]) -> None:
        batch = f"tui {self.clock().astimezone(self.tz):%Y-%m-%d %H:%M:%S}"
        try:
            warning = self.runtime.broker_warning()
        except ConfigError as exc:  # a broker URL that can never work: nothing is recorded
            self.call_from_thread(self._submit_failed, urls, str(exc))
            self.call_from_thread(self._problem, "broker", str(exc))
            return
        if warning is not None:  # said now: sending keeps trying for the publish timeout
            self.call_from_thread(self._problem, "broker", warning)
            self.call_from_thread(self._say, f"Submitting… {warning}", "warning")
        try:
            report = self.runtime.submit(urls, batch=batch)
        except StoreUnavailable as exc:
            # Nothing was recorded: every URL goes back into the input.
            self.call_from_thread(self._submit_failed, urls, f"database unreachable: {exc}")
            self.call_from_thread(self._problem, "database", str(exc))
            return
        except BrokerError as exc:
            self._unsent = True
            self.call_from_thread(self._problem, "broker", str(exc))
            self.call_from_thread(self._say, "Recorded, but the broker is unreachable: the jobs stay queued and "
                                  "are sent when it is back.", "warning")
            return
        self.call_from_thread(self._submitted, report)

    def _submit_failed(self, urls: list[str], error: str) -> None:
        self._put_back(urls)
        self._say(f"Nothing queued ({error}); your URLs are back in the input.", "error")

    def _put_back(self, texts: Iterable[str]) -> None:
        box = self.urls
        back = " ".join(texts)
        box.value = f"{back} {box.value}".strip() if box.value else back
        box.cursor_position = len(box.value)

    def _submitted(self, report: SubmitReport) -> None:
        text = Styled()
        queued = len(report.job_ids)
        if queued:
            text.append(f"✓ Queued {queued:,} URL{'s' if queued != 1 else ''}", OK)
            if report.batch is not None:
                text.append(" in batch ")
                text.append(printable(report.batch.name))
            text.append(". ")
        if report.rejected:
            self._put_back(r.text for r in report.rejected)
            n = len(report.rejected)
            text.append(f"✗ {n} not queued (left in the input): ", f"bold {FAILED}")
            for i, rejected in enumerate(report.rejected[:SHOWN_REJECTIONS]):
                if i:
                    text.append("; ")
                text.append(printable(mask_url(rejected.text), 60), "bold")
                text.append(f" — {printable(rejected.reason)}")
            if n > SHOWN_REJECTIONS:
                text.append(f"; and {n - SHOWN_REJECTIONS} more")
        self.message.update(text.content)
        self._shown_grid().reload()

    def _say(self, message: str, severity: str = "information") -> None:
        style = {"warning": WARNING, "error": f"bold {FAILED}"}.get(severity, "")
        self.message.update(styled(message, style))

    # ------------------------------------------------------------------ view: filter and sort

    def _set_query(self, query: Query) -> None:
        self.view_query = query
        self.grid.set_query(query)
        self.view_bar.show(query, total=None)

    def _set_filter(self, **changes: Any) -> None:
        self._set_query(replace(self.view_query, flt=replace(self.view_query.flt, **changes)))

    def _set_url_query(self, query: UrlQuery) -> None:
        self.url_query = query
        self.url_grid.set_query(query)
        self.view_bar.show_urls(query, None)

    def action_filter(self) -> None:
        box = self.filter_box
        box.display = True
        self.screen.set_focus(box)  # at once: the next keys typed are the filter's

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        text = event.value.strip() or None
        if self.by_url:
            if text != self.url_query.text:
                self._set_url_query(replace(self.url_query, text=text))
        elif text != self.view_query.flt.text:
            self._set_filter(text=text)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._leave_filter()

    def _leave_filter(self) -> None:
        box = self.filter_box
        if not box.value.strip():
            box.display = False
        self.screen.set_focus(self._shown_grid())

    def action_toggle_failed(self) -> None:
        if self.by_url:
            self._set_url_query(replace(self.url_query, state=None if self.url_query.state else "failing"))
            return
        self._set_filter(failed=not self.view_query.flt.failed)

    def action_cycle_change(self) -> None:
        """By URL: new failures → recovered → still failing (since the last batch) → all."""
        if not self.by_url:
            self._say("n filters the by-URL view (u shows it): new failures, recovered, still failing.")
            return
        kinds = (None, *CHANGES)
        change = kinds[(kinds.index(self.url_query.change) + 1) % len(kinds)]
        self._set_url_query(replace(self.url_query, change=change))

    def action_cycle_sort(self) -> None:
        if self.by_url:
            sort = SORTS[(SORTS.index(self.url_query.sort) + 1) % len(SORTS)]
            self._set_url_query(replace(self.url_query, sort=sort))
            self.notify(f"Sorted: {SORT_LABELS[sort]}", timeout=1.5)
            return
        order = ORDERS[(ORDERS.index(self.view_query.order) + 1) % len(ORDERS)]
        self._set_query(replace(self.view_query, order=order))
        self.notify(f"Sorted: {order}", timeout=1.5)

    def action_clear_filters(self) -> None:
        box = self.filter_box
        box.value = ""
        box.display = False
        if self.by_url:
            self._set_url_query(UrlQuery(sort=self.url_query.sort))
            return
        self._set_query(Query(JobFilter(), self.view_query.order))

    def _job_view_only(self, what: str) -> bool:
        """True (and says so) when a key of the job view is pressed in the by-URL view."""
        if self.by_url:
            self._say(f"{what} works in the job view (u switches); by URL: f failing, n changes, ^f text, s sort.")
        return self.by_url

    def action_pick_outcome(self) -> None:
        if self._job_view_only("o (one outcome)"):
            return
        options = [("", "any outcome"), *[(o, o) for o in OUTCOMES]]

        def chosen(value: str | None) -> None:
            if value is not None:
                self._set_filter(outcome=value or None)

        self.push_screen(ChoiceScreen("Show only one outcome", options), chosen)

    def action_pick_batch(self) -> None:
        if not self._job_view_only("b (one batch)"):
            self.pick_batch()

    @work(thread=True, group="batches", exit_on_error=False)
    def pick_batch(self) -> None:
        try:
            batches = grid_sql.recent_batches(self.runtime.store)
        except StoreUnavailable as exc:
            self.call_from_thread(self._problem, "database", str(exc))
            return
        options = [("", "every batch")] + [
            (str(b.id), f"{b.name} · {b.size:,} job{'s' if b.size != 1 else ''}") for b in batches
        ]

        def chosen(value: str | None) -> None:
            if value is not None:
                self._set_filter(batch=value or None)

        self.call_from_thread(self.push_screen, ChoiceScreen("Show only one batch (newest first)", options), chosen)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.view_bar.show(paused=self.paused)
        if not self.paused:
            self._shown_grid().reload()

    # ------------------------------------------------------------------ focus

    # Focus moves at once (``screen.set_focus``), not later as ``widget.focus()`` does: keys
    # typed right after ↓ are already queued and must reach the grid, not the input.
    def action_focus_input(self) -> None:
        self.screen.set_focus(self.urls)

    def action_focus_grid(self) -> None:
        self.screen.set_focus(self._shown_grid())

    def action_escape(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "filter":
            self._leave_filter()
        elif focused is not None and focused.id == "urls":
            self.screen.set_focus(self._shown_grid())

    # ------------------------------------------------------------------ actions on rows

    def _target(self) -> JobView | None:
        if isinstance(self.screen, DetailScreen):
            return self.screen.job
        if self.by_url:
            row = self.url_grid.current
            return None if row is None else row.job
        return self.grid.current

    def action_copy_url(self) -> None:
        job = self._target()
        if job is None:
            return
        self.copy_to_clipboard(job.url)
        self._say(f"Copied {printable(mask_url(job.url), 200)}")
        self.notify("URL copied to the clipboard", timeout=2, markup=False)

    def action_retest(self) -> None:
        job = self._target()
        if job is not None:  # the row's job, or the URL's latest: one new job for its URL
            self.retest([job.id], "1 URL")

    @work(thread=True, group="retest", exit_on_error=False)
    def retest(self, ids: list[int], what: str) -> None:
        try:
            report = self.runtime.retest(ids)
        except StoreUnavailable as exc:
            self.call_from_thread(self._problem, "database", str(exc))
            self.call_from_thread(self._say, f"Re-test failed: database unreachable ({exc})", "error")
            return
        except BrokerError as exc:
            self._unsent = True
            self.call_from_thread(self._problem, "broker", str(exc))
            self.call_from_thread(self._say, "Re-test recorded; the broker is unreachable, it is sent when it is back.",
                                  "warning")
            return
        n = len(report.job_ids)
        self.call_from_thread(self._say, f"↻ Re-testing {what} ({n:,} new job{'s' if n != 1 else ''}).")
        self.call_from_thread(self._shown_grid().reload)

    def action_retest_failed(self) -> None:
        if self.by_url and not isinstance(self.screen, DetailScreen):
            self.retest_failing_urls(self.url_query)
        else:
            self.retest_failed_in_view(self.view_query)

    @work(thread=True, group="retest", exit_on_error=False)
    def retest_failed_in_view(self, query: Query) -> None:
        """Every URL of the job view whose state is failing, once: the newest failed job of
        each (its options), however many jobs the URL has in the view."""
        flt = replace(query.flt, failed=True)
        store = self.runtime.store
        try:
            newest: dict[str, int] = {}
            for v in store.iter_jobs(flt, order="newest", limit=RETEST_LIMIT):
                newest.setdefault(v.url, v.id)
            states = urls_sql.url_states(store, list(newest))
        except StoreUnavailable as exc:
            self.call_from_thread(self._problem, "database", str(exc))
            return
        # A URL with no state row yet (checked before URL history) counts by its failed job.
        ids = [i for url, i in newest.items() if states.get(url, "failing") == "failing"]
        self._retest_urls(ids)

    @work(thread=True, group="retest", exit_on_error=False)
    def retest_failing_urls(self, query: UrlQuery) -> None:
        """Every failing URL of the by-URL view, once (a new job like its latest)."""
        from .url_rows import url_filter

        store = self.runtime.store
        if query.state not in (None, "failing"):
            self._retest_urls([])
            return
        try:
            flt, _ = url_filter(store, replace(query, state="failing"))
            views = [] if flt is None else urls_sql.list_urls(store, flt, since=self.clock(), sort="url",
                                                              limit=RETEST_LIMIT)
        except StoreUnavailable as exc:
            self.call_from_thread(self._problem, "database", str(exc))
            return
        self._retest_urls([v.last_job_id for v in views if v.last_job_id is not None])

    def _retest_urls(self, ids: list[int]) -> None:
        """Worker thread: one new job per URL (``ids``: one job of each)."""
        if not ids:
            self.call_from_thread(self._say, "No failing URL in this view.")
            return
        n = len(ids)
        self.retest(sorted(ids), f"{n:,} failing URL{'s' if n != 1 else ''} of this view, each once")

    # ------------------------------------------------------------------ cancel

    def action_cancel_jobs(self) -> None:
        self.offer_cancel(self._target(), self.view_query.flt.batch)

    @work(thread=True, group="cancel", exit_on_error=False)
    def offer_cancel(self, job: JobView | None, batch: str | None) -> None:
        try:
            options = cancel.choices(self.runtime, job, batch)
        except StoreUnavailable as exc:
            self.call_from_thread(self._problem, "database", str(exc))
            return
        if len(options) == 1:
            self.call_from_thread(self._say, "Nothing queued to cancel here (the row's job and batch are not queued).")
            return

        def chosen(key: str | None) -> None:
            if key and key != cancel.KEEP:
                self.do_cancel(key)

        self.call_from_thread(self.push_screen, ChoiceScreen(
            "Cancel queued jobs? They will not be checked.", options,
            note="Done and running jobs and their results stay. Esc: cancel nothing."), chosen)

    @work(thread=True, group="cancel", exit_on_error=False)
    def do_cancel(self, key: str) -> None:
        try:
            n = cancel.apply(self.runtime, key)
        except StoreUnavailable as exc:
            self.call_from_thread(self._problem, "database", str(exc))
            return
        self.call_from_thread(self._say, f"⊘ Cancelled {n:,} queued job{'s' if n != 1 else ''}.")
        self.call_from_thread(self._shown_grid().reload)

    # ------------------------------------------------------------------ export

    def action_export(self) -> None:
        if self._job_view_only("e (export; runner urls --format csv exports URLs)"):
            return

        def chosen(fmt: str | None) -> None:
            if fmt:
                self.export(self.view_query, fmt)

        self.push_screen(ChoiceScreen("Export the current view", [("csv", "CSV (spreadsheets)"),
                                                                   ("json", "JSON Lines (scripts; full details)")],
                                      note=f"written to {self._export_dir()}"), chosen)

    def _export_dir(self) -> Path:
        if self.export_dir is not None:
            return self.export_dir
        cwd = Path.cwd()
        if os.access(cwd, os.W_OK):
            return cwd
        from platformdirs import user_data_dir

        return Path(user_data_dir("urltester"))

    @work(thread=True, group="export", exit_on_error=False)
    def export(self, query: Query, fmt: str) -> None:
        from runner.jobs.report import write_csv, write_json

        folder = self._export_dir()
        stamp = self.clock().astimezone(self.tz).strftime("%Y%m%d-%H%M%S")
        path = folder / f"urltester-{stamp}.{'csv' if fmt == 'csv' else 'jsonl'}"
        n = 1
        while path.exists():
            n += 1
            path = folder / f"urltester-{stamp}-{n}.{'csv' if fmt == 'csv' else 'jsonl'}"
        self.call_from_thread(self._say, f"Exporting to {path}…")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            rows = self.runtime.store.iter_jobs(query.flt, order=query.order, detail=(fmt == "json"))
            with open(path, "w", encoding="utf-8", newline="") as out:
                count = (write_csv if fmt == "csv" else write_json)(rows, out, regions=self.runtime.region_results)
        except StoreUnavailable as exc:
            self.call_from_thread(self._problem, "database", str(exc))
            self.call_from_thread(self._say, f"Export stopped: database unreachable ({exc}); {path} is incomplete.",
                                  "error")
            return
        except OSError as exc:
            self.call_from_thread(self._say, f"Export failed: {exc}", "error")
            return
        self.last_export = path
        self.call_from_thread(self._say, f"✓ Exported {count:,} row{'s' if count != 1 else ''} to {path}")
        self.call_from_thread(self.notify, f"Exported {count:,} rows to {path}", markup=False, timeout=6)

    # ------------------------------------------------------------------ help and palette

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(help_sections(self)))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help: keys", "Every key of the app", self.action_help)
        yield SystemCommand("Filter by URL text", "Show only URLs containing some text (^f, or / in the grid)",
                            self.action_filter)
        yield SystemCommand("Failed only", "Toggle showing only failed checks (f)", self.action_toggle_failed)
        yield SystemCommand("Filter by outcome", "Show only one outcome (o)", self.action_pick_outcome)
        yield SystemCommand("Filter by batch", "Show only one batch (b)", self.action_pick_batch)
        yield SystemCommand("Clear filters", "Show every job (x)", self.action_clear_filters)
        yield SystemCommand("Sort", "Next order: newest, oldest, slowest, status, checked (s)", self.action_cycle_sort)
        yield SystemCommand("Pause / resume refresh", "Stop or restart live updates (p)", self.action_toggle_pause)
        yield SystemCommand("Re-test row", "Check the URL under the cursor again (r)", self.action_retest)
        yield SystemCommand("Re-test failing in view", "Check every failing URL of this view again, each once (R)",
                            self.action_retest_failed)
        yield SystemCommand("By URL / by job", "One row per URL, or one per job (u)", self.action_toggle_urls)
        yield SystemCommand("Changes since the last batch", "By URL: new failures, recovered, still failing (n)",
                            self.action_cycle_change)
        yield SystemCommand("Cancel queued jobs", "Take back the row's job or its batch's queued jobs (C)",
                            self.action_cancel_jobs)
        yield SystemCommand("Copy URL", "Copy the URL under the cursor (c)", self.action_copy_url)
        yield SystemCommand("Export view", "Write this view to CSV or JSON (e)", self.action_export)
        yield SystemCommand("Submit URLs", "Go to the URL input (i)", self.action_focus_input)



__all__ = ["UrlTesterApp"]
