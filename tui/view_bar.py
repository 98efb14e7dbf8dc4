"""ViewBar: one line above the grid saying what it shows: order, filters, rows, paused."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from runner.text import printable

from .window import Query

if TYPE_CHECKING:
    from .url_rows import UrlQuery

ORDER_LABELS = {
    "newest": "newest first",
    "oldest": "oldest first",
    "latency": "slowest first",
    "status": "by status code",
    "checked": "last checked first",
}


def describe(query: Query) -> str:
    """The filters of a query in words (plain text)."""
    flt = query.flt
    parts = []
    if flt.failed:
        parts.append("failed only")
    if flt.outcome:
        parts.append(f"outcome {flt.outcome}")
    if flt.batch:
        parts.append(f"batch {flt.batch}")
    if flt.state:
        parts.append(flt.state)
    if flt.text:
        parts.append(f"URL contains “{flt.text}”")
    return ", ".join(parts) or "all jobs"


class ViewBar(Static):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__("", id=id)
        self.query_shown = Query()
        self.total: int | None = None
        self.paused = False
        self.url_text: Text | None = None  # the by-URL view's line while it is shown

    def show_urls(self, query: UrlQuery, total: int | None, offset: int = 0, shown: int = 0,
                  batch: int | None = None) -> None:
        """The by-URL view's line: its filters, order, and which rows of how many."""
        from .url_rows import SORT_LABELS

        text = Text(no_wrap=True, overflow="ellipsis")
        if self.paused:
            text.append(" ⏸ PAUSED ", "reverse bold")
            text.append(" ")
        text.append("By URL: ", "bold")
        text.append(printable(query.describe(), 120), "bold")
        if query.change is not None and batch is not None:
            text.append(f" (batch #{batch})")
        text.append(f" · {SORT_LABELS.get(query.sort, query.sort)}")
        if total is not None:
            if shown and shown < total:
                text.append(f" · {offset + 1:,}–{offset + shown:,} of {total:,} URLs")
            else:
                text.append(f" · {total:,} URL{'s' if total != 1 else ''}")
        self.url_text = text
        self.update(text)

    def show(self, query: Query | None = None, total: int | None = None, paused: bool | None = None) -> None:
        if query is not None:
            self.query_shown = query
        if total is not None:
            self.total = total
        if paused is not None:
            self.paused = paused
        if query is None and total is None and getattr(self.app, "by_url", False):
            self.show_urls(self.app.url_query, None)  # type: ignore[attr-defined]  # UrlTesterApp's (self.app is typed App)
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.paused:
            text.append(" ⏸ PAUSED ", "reverse bold")
            text.append(" ")
        text.append(printable(describe(self.query_shown), 120), "bold")
        text.append(f" · {ORDER_LABELS.get(self.query_shown.order, self.query_shown.order)}")
        if self.total is not None:
            text.append(f" · {self.total:,} row{'s' if self.total != 1 else ''}")
        self.update(text)
