"""JobGrid: the results grid, a Line API ``ScrollView`` over a windowed cache of rows.

It never holds more than a few screens of rows: scrolling asks a worker thread for the
rows around the screen (keyset pagination, see :mod:`tui.window`), and a refresh re-reads
only that window. The cursor follows its job across refreshes; when new jobs arrive above
a scrolled view, the view moves down with its rows instead of jumping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo
from functools import partial

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from db import JobView, Store

from .columns import Column, cell, fit, fit_middle, layout, state_class, url_cuts
from .window import Loaded, Query, Window, load

_PLAIN = Style()
RECOUNT_SECONDS = 5.0  # a full count of the listing at most this often (see window.load)


class JobGrid(ScrollView, can_focus=True):
    """Jobs and their results, newest first by default, drawn a line at a time."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False, tooltip="cursor up"),
        Binding("down,j", "cursor(1)", "Down", show=False, tooltip="cursor down"),
        Binding("pageup", "page(-1)", "Page up", show=False, tooltip="a page up"),
        Binding("pagedown,space", "page(1)", "Page down", show=False, tooltip="a page down"),
        Binding("home,g", "first", "First", show=False, tooltip="first row"),
        Binding("end,G", "last", "Last", show=False, tooltip="last row"),
        Binding("enter", "activate", "Details", tooltip="details of the row: timings, redirects, TLS, headers, error"),
    ]

    COMPONENT_CLASSES = {
        "job-grid--header",
        "job-grid--cursor",
        "job-grid--cursor-blurred",
        "job-grid--ok",
        "job-grid--failed",
        "job-grid--queued",
        "job-grid--running",
        "job-grid--cancelled",
        "job-grid--error",
        "job-grid--pending",
    }

    cursor = reactive(0, always_update=False, repaint=False)

    class Activated(Message):
        """Enter (or a double click) on a row."""

        def __init__(self, job: JobView) -> None:
            super().__init__()
            self.job = job

    class FetchFailed(Message):
        """The database did not answer a window fetch (it is retried on the next refresh)."""

        def __init__(self, error: str, unavailable: bool) -> None:
            super().__init__()
            self.error = error
            self.unavailable = unavailable

    class Fetched(Message):
        """A window arrived: the listing's size and how long the fetch took."""

        def __init__(self, total: int, seconds: float, refresh: bool) -> None:
            super().__init__()
            self.total = total
            self.seconds = seconds
            self.refresh = refresh

    class _Loaded(Message):
        def __init__(self, loaded: Loaded, generation: int, refresh: bool) -> None:
            super().__init__()
            self.loaded = loaded
            self.generation = generation
            self.refresh = refresh

    class _Failed(Message):
        def __init__(self, generation: int) -> None:
            super().__init__()
            self.generation = generation

    def __init__(self, store: Store, *, clock: Callable[[], datetime], tz: tzinfo | None = None,
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(name=name, id=id, classes=classes)
        self.store = store
        self.clock = clock
        self.tz = tz
        self.view_query = Query()
        self.window = Window()
        self.total: int | None = None
        self.loaded = False  # True once the first window has arrived (tests and benchmarks wait on it)
        self._first_id: int | None = None
        self._generation = 0
        self._inflight = False
        self._again = False
        self._refresh_pending = False
        self._counted_at = 0.0  # monotonic time of the last full count
        self._now = clock()
        self._layout: list[tuple[Column, int]] = layout(80)
        self._cuts: dict[str, str] = {}  # the URLs on screen, each cut to tell it from the others
        self._cuts_key: tuple[object, ...] = ()
        self._cuts_window: Window | None = None

    # ------------------------------------------------------------------ public

    @property
    def current(self) -> JobView | None:
        """The job under the cursor, if its row is loaded."""
        return self.window.get(self.cursor)

    @property
    def rows_in_view(self) -> list[JobView]:
        top = self.scroll_offset.y
        return [v for i in range(top, top + self._page) if (v := self.window.get(i)) is not None]

    def set_query(self, query: Query) -> None:
        """Show another filter or order: back to the top, fetched afresh."""
        if query == self.view_query:
            return
        self.view_query = query
        self._generation += 1
        self.window = Window()
        self.total = None
        self._first_id = None
        self._counted_at = 0.0
        self.cursor = 0
        self.scroll_to(y=0, animate=False, immediate=True)
        self._set_total(0)
        self.reload()

    def reload(self) -> None:
        """Re-read the rows on screen and the listing's size (data changed)."""
        self._refresh_pending = True
        self._ensure()

    # ------------------------------------------------------------------ fetching

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _ensure(self) -> None:
        top = self.scroll_offset.y
        a, b = top, top + self._page
        if self.total is not None:
            b = min(b, self.total)
        need = self._refresh_pending or self.total is None or not self.window.covers(a, max(a, b))
        if not need and not self._near_edge(a, b):
            return
        if self._inflight:
            self._again = self._again or need
            return
        self._inflight = True
        refresh, self._refresh_pending = self._refresh_pending or self.total is None, False
        want = (max(0, top - self._page), top + 2 * self._page)
        now = time.monotonic()
        recount = now - self._counted_at >= RECOUNT_SECONDS
        if refresh and recount:
            self._counted_at = now
        job = partial(self._load, self.view_query, self.window, want, self.total, refresh, self._first_id,
                      self._generation, recount)
        self.run_worker(job, thread=True, group="grid", exit_on_error=False, name="grid fetch")

    def _near_edge(self, a: int, b: int) -> bool:
        """True when the screen is within half a page of the cache's end: prefetch the next rows
        before they are needed, so paging on shows rows at once instead of placeholders."""
        margin = self._page // 2
        total = self.total or 0
        below = self.window.end < total and self.window.end - b < margin
        above = self.window.start > 0 and a - self.window.start < margin
        return below or above

    def _load(self, query: Query, window: Window, want: tuple[int, int], total: int | None,
              refresh: bool, first_id: int | None, generation: int, recount: bool) -> None:
        """Worker thread: fetch, then post the result back to the widget."""
        from db import StoreUnavailable

        try:
            loaded = load(self.store, query, window, want, total=total, refresh=refresh, first_id=first_id,
                          recount=recount)
        except StoreUnavailable as exc:
            self.post_message(self._Failed(generation))
            self.post_message(self.FetchFailed(str(exc), True))
            return
        except Exception as exc:  # noqa: BLE001 - shown in the banner, never a crash of the UI
            self.post_message(self._Failed(generation))
            self.post_message(self.FetchFailed(f"{type(exc).__name__}: {exc}", False))
            return
        self.post_message(self._Loaded(loaded, generation, refresh))

    def on_job_grid__failed(self, message: _Failed) -> None:
        message.stop()
        self._inflight = False
        self._refresh_pending = True  # try again at the next refresh tick

    def on_job_grid__loaded(self, message: _Loaded) -> None:
        message.stop()
        self._inflight = False
        if message.generation != self._generation:
            self._refresh_pending = True
            self._ensure()
            return
        loaded = message.loaded
        old_cursor_job = self.window.get(self.cursor)
        top = self.scroll_offset.y
        self._now = self.clock()
        self.window = loaded.window
        self._relayout()
        self._first_id = loaded.first_id
        self._set_total(loaded.total)
        if loaded.shift:
            # New rows above a scrolled view: keep the same rows (and cursor job) on screen.
            self.scroll_to(y=top + loaded.shift, animate=False, immediate=True)
            self.cursor = self.cursor + loaded.shift
        elif old_cursor_job is not None and self.cursor != 0 or top > 0:
            found = self.window.index_of(old_cursor_job.id) if old_cursor_job is not None else None
            if found is not None:
                self.cursor = found
        self.cursor = max(0, min(self.cursor, loaded.total - 1))
        self.loaded = True
        self.refresh()
        self.post_message(self.Fetched(loaded.total, loaded.seconds, message.refresh))
        if self._again:
            self._again = False
            self._ensure()
        else:
            self._ensure()  # the screen may have scrolled while the fetch ran

    def _relayout(self) -> None:
        """Widths for this terminal and these rows: the URL gets what its longest on screen
        needs (within limits), the rest goes to the other columns."""
        urls = [cell_len(cell(v, "url", self._now, self.tz)) for v in self.window.rows]
        self._layout = layout(self.scrollable_content_region.width, regions=bool(self.window.regions),
                              url_need=max(urls) if urls else None)

    def _url_cut(self, url: str, width: int) -> str:
        key = (self.scroll_offset.y, width, self._page)
        if key != self._cuts_key or self._cuts_window is not self.window:  # identity: cheap per line
            self._cuts_key, self._cuts_window = key, self.window
            self._cuts = url_cuts([cell(v, "url", self._now, self.tz) for v in self.rows_in_view], width)
        return self._cuts.get(url) or fit_middle(url, width)

    def _set_total(self, total: int) -> None:
        self.total = total
        self.virtual_size = Size(self.scrollable_content_region.width, total + 1)

    # ------------------------------------------------------------------ events

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()
        if self.total is not None:
            self._set_total(self.total)
        self._ensure()

    def on_mount(self) -> None:
        self._relayout()
        self.reload()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self.is_mounted:
            self._ensure()

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh()

    async def on_click(self, event: events.Click) -> None:
        if event.y < 1 or self.total is None:
            return
        index = self.scroll_offset.y + event.y - 1
        if 0 <= index < self.total:
            self.cursor = index
            if event.chain >= 2:
                self.action_activate()

    # ------------------------------------------------------------------ actions

    def _keep_cursor_visible(self) -> None:
        self._scroll_to_cursor()
        # A relayout (the scrollbar appearing) can clamp the scroll just set: check again after it.
        self.call_after_refresh(self._scroll_to_cursor)

    def _scroll_to_cursor(self) -> None:
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self._page:
            self.scroll_to(y=self.cursor - self._page + 1, animate=False, immediate=True)

    def _move(self, index: int) -> None:
        if not self.total:
            return
        self.cursor = max(0, min(index, self.total - 1))
        self._keep_cursor_visible()

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        if not self.total:
            return
        page = self._page
        offset = self.cursor - self.scroll_offset.y
        self.scroll_to(y=self.scroll_offset.y + direction * page, animate=False, immediate=True)
        self._move(self.scroll_offset.y + offset)

    def action_first(self) -> None:
        self._move(0)

    def action_last(self) -> None:
        if self.total:
            self._move(self.total - 1)

    def action_activate(self) -> None:
        job = self.current
        if job is not None:
            self.post_message(self.Activated(job))

    # ------------------------------------------------------------------ drawing

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"job-grid--{name}")

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            return self._header(width)
        index = self.scroll_offset.y + y - 1
        if self.total is None or index >= self.total:
            return Strip.blank(width, base)
        view = self.window.get(index)
        row_style = base
        if index == self.cursor:
            row_style = base + self._style("cursor" if self.has_focus else "cursor-blurred")
        if view is None:  # not fetched yet: a placeholder until the worker answers
            pending = Text(fit(" …", width), style=row_style + self._style("pending"), end="")
            return Strip(self._segments(pending), width)
        text = Text(style=row_style, no_wrap=True, end="")
        for n, (col, w) in enumerate(self._layout):
            if n:
                text.append(" ")
            text_ = cell(view, col.key, self._now, self.tz, self.window.regions.get(view.id))
            value = self._url_cut(text_, w) if col.key == "url" else fit(text_, w, col.right)
            if col.key == "state":
                text.append(value, self._style(state_class(view)))
            elif col.key == "error":
                text.append(value, self._style("error"))
            else:
                text.append(value)
        strip = Strip(self._segments(text), cell_len(text.plain))
        return strip.crop_extend(0, width, row_style)

    def _header(self, width: int) -> Strip:
        style = self.rich_style + self._style("header")
        text = Text(style=style, no_wrap=True, end="")
        for n, (col, w) in enumerate(self._layout):
            if n:
                text.append(" ")
            text.append(fit(col.title, w, col.right))
        return Strip(self._segments(text), cell_len(text.plain)).crop_extend(0, width, style)

    def _segments(self, text: Text) -> list[Segment]:
        """``text`` as segments, each with a Style. Hazard: rich leaves a segment's style None
        when its style is empty, as every style is under NO_COLOR, and Textual's NO_COLOR
        filter then fails on it (the app crashed at start with NO_COLOR=1)."""
        return [Segment(t, s or _PLAIN, c) for t, s, c in text.render(self.app.console)]
