"""Imports that read documents: sitemaps, HTML and Markdown, and any SOURCE given as a URL.

``runner import`` hands :class:`Reading` its SOURCE when the format is ``sitemap``,
``html`` or ``markdown`` (by ``--format``, or the name's extension: ``.xml``, ``.xml.gz``,
``.html``, ``.htm``, ``.md``, ``.markdown``), or when SOURCE is an http(s) URL (any format;
without ``--format`` and a telling extension, the response's Content-Type decides).
A reading yields the records :mod:`runner.jobs.readers` would (``(place, url, options)``
or a refusal ``(place, reason, text)``), so the importer validates, records and queues
them as any other import's, and names every bad one with its place:

* ``FILE:LINE`` (or ``URL:LINE``) for a link of an HTML or Markdown document;
* ``SITEMAP:LINE (entry N)`` for a sitemap's entry; a sitemap an index names is fetched
  and read the same way, at most :data:`MAX_LEVELS` levels deep, each with the
  protocol's bounds (:mod:`runner.discover.sitemap`).

Skipped links (``mailto:``, ``tel:``, ``javascript:``, ``data:``, a bare ``#fragment``)
are counted in the report, never refused. A sitemap's ``<lastmod>`` rides with its job
(the options' ``lastmod`` key: shown by ``runner results --format json``).

Every URL is fetched through the check's own transport (:class:`runner.check.fetch.Fetcher`):
the workers' address policy (``--deny-private``; metadata addresses always refused), the
check options' headers, ``--insecure`` and ``--max-redirects``, and the fleet-wide per-host
limits (:class:`~runner.jobs.pacing.Pacer`: a rate slot and a connection lease per
request, Retry-After kept). Memory stays flat: documents are read a piece at a time.
"""

from __future__ import annotations

import io
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any
from urllib.parse import urlsplit

from runner.check.fetch import Fetched, Fetcher, FetchFailed
from runner.check.options import CheckOptions
from runner.check.policy import AddressPolicy
from runner.discover.html import HtmlLinks
from runner.discover.links import Link
from runner.discover.markdown import read_markdown
from runner.discover.sitemap import Entry, Problem, SitemapReader
from runner.jobs.readers import FORMATS as LINE_FORMATS
from runner.jobs.readers import (
    IMPORT_FORMATS,
    ImportUsageError,
    Record,
    Refusal,
    Source,
    records,
)
from runner.taskq.app import Defer

MAX_LEVELS = 3          # a sitemap index, the sitemaps it names, and theirs
ATTEMPTS = 3            # a fetch that failed transiently (429, 503, a reset ...) is tried again
ADMIT_WAIT = 600.0      # seconds a fetch waits for its host's limits before giving up
PIECE = 64 * 1024
_EXTENSIONS = {".xml": "sitemap", ".html": "html", ".htm": "html", ".xhtml": "html",
               ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown",
               ".txt": "text", ".list": "text", ".urls": "text", ".csv": "csv",
               ".jsonl": "jsonl", ".ndjson": "jsonl"}
_MEDIA_TYPES = {"text/html": "html", "application/xhtml+xml": "html",
                "text/markdown": "markdown", "text/x-markdown": "markdown",
                "application/xml": "sitemap", "text/xml": "sitemap",
                "application/gzip": "sitemap", "application/x-gzip": "sitemap",
                "text/csv": "csv", "application/jsonl": "jsonl", "application/x-ndjson": "jsonl",
                "text/plain": "text"}


def is_url(spec: str) -> bool:
    return spec[:8].lower().startswith(("http://", "https://"))


def format_of(name: str) -> str | None:
    """The format a file name or URL's path says (``sitemap.xml.gz`` is a sitemap), or None."""
    path = urlsplit(name).path if is_url(name) else name
    lower = path.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
        return "sitemap" if lower.endswith(".xml") else None
    return _EXTENSIONS.get(os.path.splitext(lower)[1])


def label_of(name: str) -> str:
    """What a batch is named after: a file's name, a URL's last path segment (or its host)."""
    if name == "<stdin>":
        return "stdin"
    if is_url(name):
        parts = urlsplit(name)
        return os.path.basename(parts.path) or parts.hostname or name
    return os.path.basename(name)


class UrlSource:
    """An import's SOURCE given as an http(s) URL: fetched when the import reads it."""

    def __init__(self, url: str) -> None:
        self.name = url
        self.size: int | None = None
        self.read = 0
        self.line_count = 0

    def close(self) -> None:
        pass


def open_input(spec: str, stdin: IO[bytes] | None = None) -> Source | UrlSource:
    """SOURCE as the user gave it: a URL (fetched later, through the check's transport), a
    file, or ``-`` for standard input. Raises ImportUsageError for an unreadable file."""
    if is_url(spec):
        return UrlSource(spec)
    if "://" in spec[:12]:
        raise ImportUsageError(f"cannot read {spec}: only http and https URLs (or a file) can be imported")
    return Source.open(spec, stdin)


class Remote:
    """Fetches an import's documents as a worker would check them: the workers' address
    policy, the batch's check options (headers, --insecure, --max-redirects), the fleet's
    per-host limits. Transient failures are tried again, :data:`ATTEMPTS` times in all."""

    def __init__(self, runtime: Any, options: CheckOptions, *, sleep: Callable[[float], None] = time.sleep) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.options = options
        self.sleep = sleep
        policy = AddressPolicy(deny_private=settings.deny_private, allow=settings.allow_networks)
        self.fetcher = Fetcher(policy, on_retry_after=self._pause)

    def open(self, url: str) -> Fetched:
        """The response to read (close it); raises FetchFailed."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self.fetcher.open(url, headers=dict(self.options.headers), insecure=self.options.insecure,
                                         max_redirects=self.options.max_redirects, admit=self._admit)
            except FetchFailed as exc:
                if not exc.transient or attempt == ATTEMPTS:
                    raise
                # A 429/503 with Retry-After paused the host: the next admission waits for it.
                self.sleep(0.5 * 2 ** (attempt - 1) if exc.retry_after is None else 0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.fetcher.close()

    def _admit(self, url: str) -> Callable[[], None]:
        pacer = self.runtime.pacer
        pace: dict[str, Any] | None = None
        give_up = time.monotonic() + ADMIT_WAIT
        while True:
            try:
                release: Callable[[], None] = pacer.admit(url, pace).release
                return release
            except Defer as defer:
                if time.monotonic() + defer.delay > give_up:
                    raise FetchFailed(f"{url}: its host's limits gave no turn within {ADMIT_WAIT:g} s") from None
                self.sleep(defer.delay)
                pace = defer.kwargs.get("pace", pace)

    def _pause(self, host: str, seconds: float) -> None:
        self.runtime.pacer.pause(host, seconds)


class Reading:
    """One import's reading of a document SOURCE (or a URL SOURCE of any format).

    ``records()`` yields the importer's records; ``line_count`` counts what was read
    (lines, links or entries: ``unit``), ``read``/``size`` the bytes for the progress bar.
    """

    def __init__(self, source: Source | UrlSource, fmt: str | None, *,
                 remote: Callable[[], Remote], base_url: str | None = None) -> None:
        self.source = source
        self.name = source.name
        self.format = fmt or format_of(source.name)
        self.base_url = base_url
        self._remote = remote
        self._fetched: Fetched | None = None
        self._inner: Source | None = None   # a URL SOURCE of a line format, read by readers
        self.unit = {"html": "links", "markdown": "links", "sitemap": "entries"}.get(self.format or "", "lines")
        self._line_count = 0
        self.skipped: Counter[str] = Counter()
        self.sitemaps = 0
        if isinstance(source, UrlSource):
            self._open_url()

    # -- what the importer and the progress bar read

    @property
    def line_count(self) -> int:
        return self._inner.line_count if self._inner is not None else self._line_count

    @property
    def read(self) -> int:
        if self._inner is not None:
            return self._inner.read
        if self._fetched is not None:
            return self._fetched.bytes
        return getattr(self.source, "read", 0)

    @property
    def size(self) -> int | None:
        if self._fetched is not None:
            return self._fetched.length if not self._fetched.content_encoding else None
        return getattr(self.source, "size", None)

    def close(self) -> None:
        if self._fetched is not None:
            self._fetched.close()

    # -- reading

    def _open_url(self) -> None:
        url = self.source.name
        try:
            fetched = self._remote().open(url)
        except FetchFailed as exc:
            raise ImportUsageError(f"cannot fetch {exc}") from None
        self._fetched = fetched
        if self.format is None:
            self.format = _MEDIA_TYPES.get(fetched.media_type)
            if self.format is None:
                fetched.close()
                raise ImportUsageError(f"cannot tell the format of {url} (Content-Type "
                                       f"{fetched.media_type or 'none'!r}): give --format")
            self.unit = {"html": "links", "markdown": "links", "sitemap": "entries"}.get(self.format, "lines")
        if self.format in LINE_FORMATS:
            self._inner = Source(url, io.BufferedReader(fetched, PIECE), fetched.length)

    def records(self) -> Iterator[Record | Refusal]:
        fmt = self.format
        if fmt in LINE_FORMATS:
            assert self._inner is not None
            return records(self._inner, fmt)[1]
        if fmt == "html":
            return self._links(self._html())
        if fmt == "markdown":
            return self._links(self._markdown())
        if fmt == "sitemap":
            return self._sitemap()
        raise ImportUsageError(f"--format {fmt!r}: use one of {', '.join(IMPORT_FORMATS)}")

    def _stream(self) -> IO[bytes]:
        return self._fetched if self._fetched is not None else self.source.stream  # type: ignore[union-attr,return-value]  # a Fetched (a RawIOBase) or the file: read alike

    def _count_bytes(self, n: int) -> None:
        if self._fetched is None and isinstance(self.source, Source):
            self.source.read += n

    def _base(self) -> str | None:
        """``--base-url``, else the document's own URL (after redirects)."""
        if self.base_url:
            return self.base_url
        return self._fetched.url if self._fetched is not None else None

    def _html(self) -> Iterator[Link]:
        charset = self._fetched.charset if self._fetched is not None else None
        reader = HtmlLinks(self._base(), encoding=charset)
        stream = self._stream()
        while True:
            piece = stream.read(PIECE)
            if not piece:
                break
            self._count_bytes(len(piece))
            yield from reader.feed(piece)
        yield from reader.close()

    def _markdown(self) -> Iterator[Link]:
        source = self.source if self._fetched is None else Source(self.name, io.BufferedReader(self._fetched, PIECE))
        assert isinstance(source, Source)
        bad: list[tuple[int, str]] = []

        def lines() -> Iterator[tuple[int, str]]:
            for number, text, error in source.lines():
                if error is not None:
                    bad.append((number, error))
                    yield number, "\n"
                else:
                    yield number, text or "\n"

        for link in read_markdown(lines(), self._base()):
            while bad:  # a line that could not be read, reported in its place
                number, error = bad.pop(0)
                yield Link(number, "line", "", problem=error)
            yield link
        while bad:
            number, error = bad.pop(0)
            yield Link(number, "line", "", problem=error)

    def _links(self, links: Iterable[Link]) -> Iterator[Record | Refusal]:
        try:
            for link in links:
                if link.where == "line":  # an unreadable line, not a link
                    yield link.line, link.problem or "", ""
                    continue
                self._line_count += 1
                if link.skipped is not None:
                    self.skipped[link.skipped] += 1
                elif link.problem is not None:
                    yield link.line, f"{link.where}: {link.problem}", link.raw
                else:
                    yield link.line, link.url or "", None
        except FetchFailed as exc:
            yield f"{self.name}", f"the rest of the document was not read: {exc}", ""

    # -- sitemaps

    def _sitemap(self) -> Iterator[Record | Refusal]:
        seen: set[str] = set()
        if self._fetched is not None:
            seen.add(self._fetched.url)
            seen.add(self.name)
        yield from self._one_sitemap(self.name, self._stream(), 1, seen, top=True)

    def _one_sitemap(self, name: str, stream: IO[bytes], level: int, seen: set[str],
                     top: bool = False) -> Iterator[Record | Refusal]:
        reader = SitemapReader(stream)
        children: list[tuple[str, str]] = []   # (place, URL) of the sitemaps an index names
        counted = False
        try:
            for item in reader.read():
                if top:
                    self._count_top(reader)
                if not counted and reader.kind is not None:
                    self.sitemaps += 1
                    counted = True
                if isinstance(item, Problem):
                    place = _place(name, item.line, item.number)
                    if top and reader.kind is None:
                        raise ImportUsageError(f"{place}: {item.reason}")
                    yield place, item.reason, item.text
                    continue
                place = _place(name, item.line, item.number)
                if reader.kind == "sitemapindex":
                    children.append((place, item.loc))
                    continue
                self._line_count += 1
                yield place, item.loc, self._lastmod(item)
        except FetchFailed as exc:
            yield name, f"the rest of this sitemap was not read: {exc}", ""
        for place, url in children:
            yield from self._child(place, url, level, seen)

    def _count_top(self, reader: SitemapReader) -> None:
        if self._fetched is None and isinstance(self.source, Source):
            self.source.read = reader.bytes  # uncompressed: the bar is a guide, not a gauge

    def _child(self, place: str, url: str, level: int, seen: set[str]) -> Iterator[Record | Refusal]:
        if level >= MAX_LEVELS:
            yield place, f"a sitemap index nested more than {MAX_LEVELS} levels deep: not followed", url
            return
        if not is_url(url):
            yield place, "a sitemap index must name sitemaps by http(s) URL", url
            return
        if url in seen:
            yield place, "this sitemap was read already (an index names it twice, or a loop)", url
            return
        seen.add(url)
        try:
            fetched = self._remote().open(url)
        except FetchFailed as exc:
            yield place, f"cannot fetch the sitemap: {exc}", ""
            return
        with fetched:
            seen.add(fetched.url)
            yield from self._one_sitemap(url, fetched, level + 1, seen)  # type: ignore[arg-type]  # a RawIOBase, read like a file

    @staticmethod
    def _lastmod(entry: Entry) -> dict[str, Any] | None:
        """The entry's ``<lastmod>``, checked by the importer (a bad one: a remark, no job lost)."""
        return None if entry.lastmod is None else {"lastmod": entry.lastmod}


def _place(name: str, line: int, number: int | None) -> str:
    return f"{name}:{line}" + (f" (entry {number:,})" if number is not None else "")
