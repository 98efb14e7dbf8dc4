"""The grid's columns: what each shows, how wide it is, and which go first when space is short.

Every cell is made from user data through :func:`runner.text.printable` and appended to a
``rich.text.Text`` as plain text: a URL such as ``https://x.test/[/b]`` is never parsed as
markup, and an escape sequence in a title is shown as ``\\x1b``, never sent to the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from rich.cells import cell_len, set_cell_size

from db import DEFAULT_REGION, JobView
from db.regions import summary
from runner.jobs.report import state_label
from runner.text import mask_url, printable


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int  # fixed width, or the minimum of a flexible column
    priority: int  # 0 = always shown; higher numbers are dropped first on narrow terminals
    right: bool = False
    flex: int = 0  # share of the spare width left once the URL has its fill (0 = fixed)


# Display order, left to right.
COLUMNS: tuple[Column, ...] = (
    Column("state", "STATE", 11, 0),  # short labels (SHORT_OUTCOMES): the detail says it in full
    Column("regions", "REGIONS", 9, 3),  # only while a job on screen named regions
    Column("code", "CODE", 4, 1, right=True),
    Column("time", "TIME", 7, 2, right=True),
    Column("size", "SIZE", 7, 6, right=True),
    Column("url", "URL", 20, 0),
    Column("title", "TITLE", 12, 5, flex=2),
    Column("checked", "CHECKED", 11, 4),
    Column("attempts", "TRY", 3, 7, right=True),
    Column("error", "ERROR", 14, 3, flex=3),
)

# The URL is what tells rows apart, so it comes first for space: an optional column is shown
# only while the URL keeps the cells it wants (URL_WANT, or less when the URLs on screen are
# shorter), and spare width goes to the URL (up to URL_MOST, or up to half the terminal for
# the longest URL on screen) before TITLE and ERROR get any.
URL_WANT = 40
URL_MOST = 72
URL_LEAST = 20

# The STATE column's words: an outcome's short name (the detail screen and `runner results`
# say it in full). Each is at most 9 cells, so "✗ redirects" fits the column's 11.
SHORT_OUTCOMES = {
    "http_error": "http", "assertion_failed": "assert", "dns_error": "dns", "connect_refused": "refused",
    "connect_timeout": "conn tmo", "read_timeout": "read tmo", "deadline_exceeded": "deadline",
    "tls_error": "tls", "too_many_redirects": "redirects", "too_large": "too large",
    "invalid_response": "invalid", "blocked": "blocked",
}


def short_state(view: JobView) -> str:
    """The grid's state label: a symbol and a short word (never colour alone)."""
    if view.state != "done" or view.ok:
        return state_label(view)
    return f"✗ {SHORT_OUTCOMES.get(view.outcome or '', view.outcome or 'failed')}"


def layout(width: int, *, regions: bool = False, url_need: int | None = None) -> list[tuple[Column, int]]:
    """The columns that fit in ``width`` cells, each with the width it gets. The REGIONS
    column is offered only with ``regions`` (some job on screen named regions); ``url_need``
    is the longest URL on screen, in cells (None: not known, the URL wants URL_WANT)."""
    offered = [c for c in COLUMNS if regions or c.key != "regions"]
    if url_need is None:
        url_want, url_most = URL_WANT, URL_MOST
    else:
        url_most = max(URL_LEAST, min(url_need, max(URL_MOST, width // 2)))
        url_want = max(URL_LEAST, min(url_need, max(URL_WANT, width * 2 // 5)))

    def need(cols: list[Column]) -> int:
        return sum(max(c.width, url_want) if c.key == "url" else c.width for c in cols) + len(cols) - 1

    chosen = [c for c in offered if c.priority == 0]
    for col in sorted((c for c in offered if c.priority), key=lambda c: c.priority):
        if need([*chosen, col]) > width:
            break  # never show a less important column in place of a more important one
        chosen.append(col)
    chosen.sort(key=COLUMNS.index)
    widths = {c.key: c.width for c in chosen}
    spare = max(0, width - (sum(widths.values()) + len(chosen) - 1))
    to_url = min(spare, max(0, url_most - widths["url"]))
    widths["url"] += to_url
    spare -= to_url
    flexible = [c for c in chosen if c.flex]
    shares = sum(c.flex for c in flexible)
    for c in flexible:
        widths[c.key] += spare * c.flex // shares
    # The rounding remainder (or all of it, with no flexible column shown) goes to the URL.
    widths["url"] += width - (sum(widths.values()) + len(chosen) - 1) if spare else 0
    return [(c, widths[c.key]) for c in chosen]


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` cut (with an ellipsis) or padded to exactly ``width`` cells."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    pad = " " * (width - cell_len(text))
    return pad + text if right else text + pad


def fit_middle(url: str, width: int) -> str:
    """A URL cut in the middle to exactly ``width`` cells: its start (scheme and host, or as
    much of them as half the width holds) and its end (the path's last part and the query,
    which is where URLs of one host differ) both stay visible."""
    if width <= 0:
        return ""
    if cell_len(url) <= width:
        return url + " " * (width - cell_len(url))
    if width < 3:
        return fit(url, width)
    scheme, sep, rest = url.partition("://")
    origin = scheme + sep + rest.split("/", 1)[0] + "/" if sep else ""
    head_cells = min(cell_len(origin), (width - 1) // 2) if origin else (width - 1) // 2
    head = set_cell_size(url, head_cells)
    tail_cells = width - 1 - cell_len(head)
    tail = ""
    for ch in reversed(url):  # whole characters from the end, so a wide one is never split
        if cell_len(tail) + cell_len(ch) > tail_cells:
            break
        tail = ch + tail
    return head + "…" + " " * (tail_cells - cell_len(tail)) + tail


def url_cuts(urls: list[str], width: int) -> dict[str, str]:
    """Each URL on screen cut to ``width`` cells so that it can be told from the others: its
    origin (scheme and host), then, from the path segment or query parameter where it first
    differs from the URL on screen most like it, as much as fits (cut in the middle if even
    that is too long). A URL alike to no other on screen is cut in the middle
    (:func:`fit_middle`): its origin and its end."""
    distinct = sorted(set(urls))
    out: dict[str, str] = {}
    for n, url in enumerate(distinct):
        if cell_len(url) <= width:
            out[url] = url + " " * (width - cell_len(url))
            continue
        shared = max((_common(url, other) for other in distinct[max(0, n - 1): n + 2] if other != url), default=0)
        out[url] = _cut_at(url, shared, width)
    return out


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


_DELIMITERS = "/?&;#"


_TAIL_LEAST = 12  # cells the distinguishing part gets at least, or the URL is cut in the middle


def _cut_at(url: str, shared: int, width: int) -> str:
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0] if sep else ""
    origin_len = len(scheme + sep + host)
    if not host or shared <= origin_len:  # it differs in its scheme or host: fit_middle shows those
        return fit_middle(url, width)
    bare = url[len(scheme + sep):]  # the row's neighbours share its scheme: it can go first
    if cell_len(bare) <= width:
        return bare + " " * (width - cell_len(bare))
    # Back to the delimiter that begins the part where this URL departs from its neighbour,
    # or further back while the rest still fits: "host…/part?that=differs".
    room = width - cell_len(host) - 1
    start = max(max(url.rfind(d, origin_len, shared + 1) for d in _DELIMITERS), origin_len)
    if start == origin_len or room < _TAIL_LEAST:
        return fit_middle(url, width)
    for earlier in sorted(i for i in range(origin_len + 1, start) if url[i] in _DELIMITERS):
        if cell_len(url[earlier:]) <= room:
            start = earlier
            break
    return host + "…" + fit_middle(url[start:], room)


def human_ms(ms: float | None) -> str:
    if ms is None:
        return ""
    if ms < 10:
        return f"{ms:.1f}ms"
    if ms < 1000:
        return f"{ms:.0f}ms"
    if ms < 100_000:
        return f"{ms / 1000:.2f}s"
    return f"{ms / 1000:.0f}s"


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n_f = n / 1024
        if n_f < 1024 or unit == "GB":
            return f"{n_f:.1f} {unit}" if n_f < 100 else f"{n_f:.0f} {unit}"
        n = int(n_f)
    return ""


def when(value: datetime | None, now: datetime, tz: tzinfo | None) -> str:
    """``HH:MM:SS`` today, ``MM-DD HH:MM`` before (in ``tz``; None = the local zone)."""
    if value is None:
        return ""
    local = value.astimezone(tz)
    if local.date() == now.astimezone(tz).date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%m-%d %H:%M")


def state_class(view: JobView) -> str:
    """The component class that colours a row's state (its word and symbol say it too)."""
    if view.state != "done":
        return view.state  # queued, running, cancelled
    return "ok" if view.ok else "failed"


def cell(view: JobView, key: str, now: datetime, tz: tzinfo | None,
         regions: Mapping[str, bool] | None = None) -> str:
    """One cell's text, safe to show. ``regions``: this job's region -> ok, heard so far."""
    if key == "regions":
        return region_cell(view, regions or {})
    getter = _CELLS[key]
    return printable(getter(view, now, tz))


def region_cell(view: JobView, heard: Mapping[str, bool]) -> str:
    """``2/3 ok`` for a job that named regions (``…`` while some have not reported)."""
    if view.regions == (DEFAULT_REGION,):
        return ""
    text = summary(view.regions, heard)
    return text if all(r in heard for r in view.regions) else text + " …"


_CELLS: dict[str, Callable[[JobView, datetime, tzinfo | None], object]] = {
    "state": lambda v, now, tz: short_state(v),
    "code": lambda v, now, tz: v.status_code,
    "time": lambda v, now, tz: human_ms(v.total_ms),
    "size": lambda v, now, tz: human_bytes(v.bytes),
    "url": lambda v, now, tz: mask_url(v.url),
    "title": lambda v, now, tz: v.title,
    "checked": lambda v, now, tz: when(v.checked_at, now, tz),
    "attempts": lambda v, now, tz: v.attempts,
    "error": lambda v, now, tz: v.error if not v.ok else "",
}
