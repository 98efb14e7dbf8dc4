"""Fuzz targets for the document readers (runner/discover): HTML, Markdown, sitemaps.

For any input, a reader returns links or entries and never raises; every link is exactly
one of resolved, skipped or refused, at a line of the document; a sitemap's entries are
numbered in order, at most 50,000, and a reason to stop is the last thing said. Memory is
bounded: each input may be repeated many times over as a stream (never held whole), and
the Python heap's peak while reading it stays under :data:`HEAP_LIMIT` (tracemalloc; for
Markdown the objects alive after each chunk;
libxml2's and expat's own buffers are proven flat by the tests that measure the process:
tests/discover, tests/conformance/test_discovery.py, scripts/bench-crawl).
"""

from __future__ import annotations

import gzip
import io
import itertools
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import strategies as st

from runner.discover.html import HtmlLinks
from runner.discover.links import SKIPPED_KINDS, TEXT_MAX, Link
from runner.discover.markdown import markdown_links, read_markdown
from runner.discover.sitemap import MAX_ENTRIES, MAX_LOC, Entry, Problem, SitemapReader

HEAP_LIMIT = 8 * 1024 * 1024   # HTML and sitemaps: the Python heap's peak while reading
REPEAT_BYTES = 512 * 1024      # an input repeated as a stream, up to about this many bytes
MARKDOWN_REPEAT_BYTES = 160 * 1024   # ten chunks of 16 KiB (markdown-it reads ~100 KB/s)
MARKDOWN_BLOCKS = 300_000      # objects alive at once: markdown-it's tokens of one chunk

_bases = st.sampled_from([None, "https://docs.example.test/guide/page.html", "http://127.0.0.1:8080/",
                          "https://u:p@h.test/a/b/"])
_link_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "#", "#top", "/a", "../b", "//cdn.test/x", "?q=1", "mailto:x@y.test", "TEL:1",
                     " javascript:x", "java\tscript:x", "data:,x", "http://[", "https://h.test:99999/",
                     "http://a.test/\x00", "ftp://f.test/", "a b", "%zz", "https://\u0661.test/",
                     "x" * 9000]),
)


def _attr(value: str) -> str:
    return '"' + value.replace('"', "&quot;") + '"'


_tag = st.builds(
    lambda tag, attr, value, text, close: f"<{tag} {attr}={_attr(value)}>{text}" + (f"</{tag}>" if close else ""),
    st.sampled_from(["a", "img", "link", "script", "iframe", "source", "base", "area", "p", "A", "div"]),
    st.sampled_from(["href", "src", "srcset", "alt", "HREF"]),
    _link_text | st.builds(lambda a, b: f"{a} 1x, {b} 2x", _link_text, _link_text),
    st.text(max_size=20),
    st.booleans(),
)
_html_piece = st.one_of(_tag, st.text(max_size=40), st.sampled_from([
    "<!doctype html>", "<html>", "<head>", "</head>", "<body>", "<!--", "-->", "<![CDATA[", "]]>",
    "<script>", "</script>", "<meta charset=\"latin-1\">",
    "<meta http-equiv=Content-Type content='text/html; charset=x'>",
    "\n", "\r\n", "&amp;", "&#0;", "&#xD800;", "<", ">", "</a>", "<a href=x"]))


@st.composite
def _html(draw: st.DrawFn) -> tuple[bytes, str | None, str | None, int]:
    text = "".join(draw(st.lists(_html_piece, max_size=30)))
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252"]))
    data = text.encode(encoding, "replace")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=30))
    declared = draw(st.sampled_from([None, None, "utf-8", "iso-8859-1", "no-such", "utf-16"]))
    repeat = draw(st.sampled_from([1, 1, 1, REPEAT_BYTES // max(1, len(data))]))
    return data, draw(_bases), declared, max(1, repeat)


def _valid(link: Link, lines: int | None = None) -> None:
    assert isinstance(link, Link)
    outcomes = [link.url is not None, link.skipped is not None, link.problem is not None]
    assert sum(outcomes) == 1, link
    assert link.skipped in (None, *SKIPPED_KINDS)
    assert link.line >= 1 and (lines is None or link.line <= lines), link
    assert len(link.text) <= TEXT_MAX


def _bounded(run: Callable[[], None], limit: int = HEAP_LIMIT) -> None:
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"the Python heap peaked at {peak:,} bytes"


def _check_html(item: tuple[bytes, str | None, str | None, int]) -> None:
    data, base, declared, repeat = item
    lines = (data.count(b"\n") + 1) * repeat

    per = max(1, min(repeat, 65536 // max(1, len(data))))  # repeats fed at once: pieces of ~64 KiB
    block = data * per

    def run() -> None:
        reader = HtmlLinks(base, encoding=declared)
        for _ in range(repeat // per):
            for link in reader.feed(block):
                _valid(link, lines)
        for link in reader.close():
            _valid(link, lines)

    _bounded(run)


_md_piece = st.one_of(st.text(max_size=30), st.sampled_from([
    "[", "]", "(", ")", "![", "<", ">", "\n", "\n\n", "    ", "```", "~~~", "> ", "- ", "1. ", "|", "---",
    "[x]: ", "[x]", "[x][]", "https://a.test/p", "www.example.com", "mailto:a@b.test", "<https://b.test/>",
    "<img src=\"i.png\">", "<a href='j.html'>", "javascript:x", "#frag", "`", "*", "_", "\\", "&amp;", "\t"]))


@st.composite
def _markdown(draw: st.DrawFn) -> tuple[str, str | None, int]:
    text = "".join(draw(st.lists(_md_piece, max_size=40)))
    repeat = draw(st.sampled_from([1] * 7 + [MARKDOWN_REPEAT_BYTES // max(1, len(text) + 2)]))
    return text, draw(_bases), max(1, repeat)


def _check_markdown(item: tuple[str, str | None, int]) -> None:
    text, base, repeat = item
    for link in markdown_links(text, base):
        _valid(link, text.count("\n") + 1)
    if repeat == 1:
        return
    block = text + "\n\n"
    per = block.count("\n")

    def lines() -> Iterator[tuple[int, str]]:
        number = 0
        pieces = [piece + "\n" for piece in block.split("\n")[:-1]]  # "\n" ends a line, as in a file
        for _ in range(repeat):
            for line in pieces:
                number += 1
                yield number, line

    # markdown-it is slow under tracemalloc: the live objects are counted instead, after
    # each chunk (what would grow with the document: kept links, an unbounded chunk).
    start = peak = sys.getallocatedblocks()
    for link in read_markdown(lines(), base, size=16 * 1024):
        _valid(link, per * repeat)
        peak = max(peak, sys.getallocatedblocks())
    assert peak - start < MARKDOWN_BLOCKS, f"{peak - start:,} more objects alive while reading"


_xml_text = st.one_of(st.text(max_size=20), st.sampled_from([
    "https://s.test/a", "&amp;", "&lt;", "&bogus;", "&#0;", "&#x10FFFF;", "<![CDATA[https://c.test/]]>",
    "x" * (MAX_LOC + 1), " ", "\n"]))
_xml_piece = st.one_of(
    st.builds(lambda loc, mod: f"<url><loc>{loc}</loc>" + (f"<lastmod>{mod}</lastmod>" if mod else "") + "</url>",
              _xml_text, st.none() | _xml_text),
    st.builds(lambda loc: f"<sitemap><loc>{loc}</loc></sitemap>", _xml_text),
    st.sampled_from(["<url>", "</url>", "<loc>", "</loc>", "<urlset>", "</urlset>", "<sitemapindex>",
                     "<!-- c -->", "<?pi x?>", '<!DOCTYPE u [<!ENTITY a "aaaa">]>',
                     '<!DOCTYPE u SYSTEM "http://127.0.0.1:9/x.dtd">', '<!ENTITY e SYSTEM "file:///etc/passwd">',
                     "&e;", "<x:loc xmlns:x='urn:x'>https://n.test/</x:loc>", "\x00", "\ufeff", " " * 50]),
    st.text(max_size=10),
)


@st.composite
def _sitemap(draw: st.DrawFn) -> tuple[bytes, int, bool, int]:
    head = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>',
                                 '<?xml version="1.0" encoding="latin-1"?>',
                                 '<?xml version="1.0" encoding="x-none"?>']))
    root = draw(st.sampled_from(["urlset", "sitemapindex", "rss"]))
    pieces = draw(st.lists(_xml_piece, max_size=20))
    body = "".join(pieces)
    data = f"{head}<{root} xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>".encode("utf-8", "surrogatepass")
    repeat = draw(st.sampled_from([1, 1, 1, REPEAT_BYTES // max(1, len(body)),
                                   60_000 if len(body) < 64 else 1]))  # past 50,000 entries
    tail = f"</{root}>".encode() if draw(st.booleans()) else draw(st.binary(max_size=10))
    gz = draw(st.booleans())
    return data + b"\x00MARK" + body.encode("utf-8", "surrogatepass") + b"\x00MARK" + tail, max(1, repeat), gz, \
        draw(st.integers(0, 40))


class _Repeated(io.RawIOBase):
    """head + middle * n + tail as a stream, never held whole."""

    def __init__(self, head: bytes, middle: bytes, tail: bytes, n: int) -> None:
        n = min(n, (64 << 20) // len(middle)) if middle else 0
        self.parts = itertools.chain([head], itertools.repeat(middle, n), [tail])
        self.current = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.current:
            try:
                self.current = next(self.parts)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.current))
        buffer[:n] = self.current[:n]
        self.current = self.current[n:]
        return n


def _check_sitemap(item: tuple[bytes, int, bool, int]) -> None:
    data, repeat, gz, cut = item
    head, middle, tail = data.split(b"\x00MARK")
    if gz:  # each part its own gzip member, as a multi-member file; maybe cut short
        head, middle, tail = gzip.compress(head), gzip.compress(middle) if middle else b"", gzip.compress(tail)
        tail = tail[: len(tail) - cut] if cut < len(tail) else tail

    def run() -> None:
        reader = SitemapReader(io.BufferedReader(_Repeated(head, middle, tail, repeat)))
        number = 0
        stopped = False
        for found in reader.read():
            assert not stopped, "nothing after a reason to stop"
            if isinstance(found, Entry):
                assert found.number > number and found.number <= MAX_ENTRIES
                number = found.number
                assert found.loc and len(found.loc) < MAX_LOC and found.line >= 1
            else:
                assert isinstance(found, Problem) and found.reason and found.line >= 1
                stopped = found.stop
        assert reader.kind in (None, "urlset", "sitemapindex")

    _bounded(run)


DOCUMENT_TARGETS = (
    ("HTML links", _html(), _check_html),
    ("Markdown links", _markdown(), _check_markdown),
    ("sitemaps", _sitemap(), _check_sitemap),
)
