"""UrlGrid: the by-URL view, one row per URL, a page (the rows on screen) at a time.

A ``DataTable`` holding only the page on screen: moving past its last row (or page down)
asks a worker thread for the next page (:func:`tui.url_rows.load_page`); a refresh re-reads
the same page. The cursor follows its URL across refreshes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, tzinfo

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from db import Store, StoreUnavailable
from runner.text import mask_url, printable

from .url_rows import (
    UrlPage,
    UrlQuery,
    UrlRow,
    cuts_for,
    header,
    load_page,
    row_text,
    state_styles,
    url_layout,
)

RECOUNT_SECONDS = 5.0  # a refresh counts the view's URLs at most this often (as the job grid)


class UrlGrid(DataTable[Text], inherit_bindings=False):
    """URLs with their state, latest check, uptime and trend."""

    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False, tooltip="cursor up"),
        Binding("down,j", "cursor_down", "Down", show=False, tooltip="cursor down"),
        Binding("pageup", "page(-1)", "Page up", show=False, tooltip="a page up"),
        Binding("pagedown,space", "page(1)", "Page down", show=False, tooltip="a page down"),
        Binding("home,g", "first", "First", show=False, tooltip="first row"),
        Binding("end,G", "last", "Last", show=False, tooltip="last row"),
        Binding("enter", "select_cursor", "History", tooltip="the URL's history and its latest check"),
    ]

    class Activated(Message):
        def __init__(self, row: UrlRow) -> None:
            super().__init__()
            self.row = row

    class Fetched(Message):
        def __init__(self, page: UrlPage) -> None:
            super().__init__()
            self.page = page

    class FetchFailed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    class _Loaded(Message):
        def __init__(self, page: UrlPage, generation: int, cursor: int | None) -> None:
            super().__init__()
            self.page, self.generation, self.cursor = page, generation, cursor

    def __init__(self, store: Store, *, clock: Callable[[], datetime], tz: tzinfo | None = None,
                 id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, show_cursor=True,
                         cell_padding=0)
        self.store = store
        self.clock = clock
        self.tz = tz
        self.view_query = UrlQuery()
        self.page = UrlPage(UrlQuery(), 0)
        self.loaded = False  # True once a page has arrived (tests wait on it)
        self._generation = 0
        self._inflight = False
        # The read waiting for the one in flight: (offset, cursor); offset None: the page on
        # screen when its turn comes (a refresh), so it never undoes a move that lands first.
        self._again: tuple[int | None, int | None] | None = None
        self._width = 0
        self._counted_at = 0.0  # monotonic time of the last count

    # ------------------------------------------------------------------ public

    @property
    def current(self) -> UrlRow | None:
        rows = self.page.rows
        return rows[self.cursor_row] if 0 <= self.cursor_row < len(rows) else None

    @property
    def rows_shown(self) -> tuple[UrlRow, ...]:
        return self.page.rows

    def set_query(self, query: UrlQuery) -> None:
        if query == self.view_query:
            return
        self.view_query = query
        self._generation += 1
        self._counted_at = 0.0
        self.fetch(0, 0)

    def reload(self) -> None:
        """Re-read the page on screen (data changed)."""
        if self._inflight:
            if self._again is None:
                self._again = (None, None)
            return  # a move already waiting reads the new data too, and is not replaced
        self.fetch(self.page.offset, None)

    # ------------------------------------------------------------------ fetching

    @property
    def _page_size(self) -> int:
        return max(1, self.size.height - 1)  # less the header

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self._width = self.size.width
            self._draw(self.page, self.cursor_row)
        self.reload()

    def fetch(self, offset: int, cursor: int | None) -> None:
        """Read rows ``offset ..`` (a page); ``cursor``: the row to put the cursor on (None:
        on the same URL as now)."""
        if self._inflight:
            self._again = (offset, cursor)
            return
        self._inflight = True
        query, generation, size = self.view_query, self._generation, self._page_size
        total: int | None = None
        if time.monotonic() - self._counted_at < RECOUNT_SECONDS and self.page.query == query and self.loaded:
            total = self.page.total  # a count over a million URLs costs: not at every refresh
        else:
            self._counted_at = time.monotonic()
        self.run_worker(lambda: self._load(query, offset, size, generation, cursor, total), thread=True,
                        group="url-grid", exit_on_error=False, name="url page")

    def _load(self, query: UrlQuery, offset: int, size: int, generation: int, cursor: int | None,
              total: int | None) -> None:
        try:
            page = load_page(self.store, query, offset, size, now=self.clock(), total=total)
        except StoreUnavailable as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - shown, never fatal
            self.app.call_from_thread(self._failed, f"{type(exc).__name__}: {exc}")
            return
        self.post_message(self._Loaded(page, generation, cursor))

    def _failed(self, error: str) -> None:
        self._inflight = False
        self.post_message(self.FetchFailed(error))
        self._next()

    @on(_Loaded)
    def _loaded(self, event: _Loaded) -> None:
        event.stop()
        self._inflight = False
        if event.generation == self._generation:
            cursor = event.cursor
            if cursor is None:  # the same URL, else the same row
                now = self.current
                ids = [r.view.id for r in event.page.rows]
                cursor = ids.index(now.view.id) if now is not None and now.view.id in ids else self.cursor_row
            self._draw(event.page, cursor)
            self.loaded = True
            self.post_message(self.Fetched(event.page))
        self._next()

    def _next(self) -> None:
        if self._again is not None:
            offset, cursor = self._again
            self._again = None
            if offset is None:
                offset = self.page.offset
            self.fetch(offset, cursor)

    def _draw(self, page: UrlPage, cursor: int) -> None:
        self.page = page
        need = max((cell_len(printable(mask_url(r.view.url))) for r in page.rows), default=None)
        cols = url_layout(self.size.width or 80, need)
        cuts = cuts_for(page.rows, cols)
        now = self.clock()
        styles = state_styles(self.app.theme_variables)  # the theme's colours, as the job grid's
        self.clear(columns=True)
        for col, title in zip(cols, header(cols), strict=True):
            self.add_column(title, width=col.width + 1, key=col.key)  # a cell's gap after it
        for row in page.rows:
            self.add_row(*row_text(row, cols, cuts, now, self.tz, styles), key=str(row.view.id))
        if page.rows:
            self.move_cursor(row=max(0, min(cursor, len(page.rows) - 1)), animate=False)

    # ------------------------------------------------------------------ moving

    def action_cursor_down(self) -> None:
        if self.cursor_row >= len(self.page.rows) - 1:
            if self.page.offset + len(self.page.rows) < self.page.total:
                self.fetch(self.page.offset + 1, len(self.page.rows) - 1)  # scroll by one row
            return
        super().action_cursor_down()

    def action_cursor_up(self) -> None:
        if self.cursor_row <= 0:
            if self.page.offset > 0:
                self.fetch(self.page.offset - 1, 0)
            return
        super().action_cursor_up()

    def action_page(self, direction: int) -> None:
        offset = max(0, self.page.offset + direction * self._page_size)
        if offset >= self.page.total:
            return
        self.fetch(offset, 0 if direction > 0 else self.cursor_row)

    def action_first(self) -> None:
        self.fetch(0, 0)

    def action_last(self) -> None:
        offset = max(0, self.page.total - self._page_size)
        self.fetch(offset, self._page_size - 1)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self.current
        if row is not None:
            self.post_message(self.Activated(row))


__all__ = ["UrlGrid"]
