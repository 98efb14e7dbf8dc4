"""Sitemaps (``<urlset>``) and sitemap indexes (``<sitemapindex>``), read streaming.

One :class:`SitemapReader` reads one file from a binary stream, a piece at a time:

* gzip (``.xml.gz``, or a server's ``Content-Encoding: gzip`` body that is still gzip) is
  recognised by its magic bytes and inflated at most :data:`PIECE` bytes at a time;
* the sitemaps protocol's bounds are enforced as the bytes pass: at most
  :data:`MAX_BYTES` (50 MB) uncompressed and :data:`MAX_ENTRIES` (50,000) entries per file.
  Past either, the rest of the file is not read (a gzip bomb costs one piece of memory);
  what was read before stands;
* the XML parser is defusedxml's over the standard library's expat, with
  ``forbid_dtd=True``: a sitemap has no DTD, so a ``<!DOCTYPE>`` is refused before any
  entity could be declared, let alone expanded (billion laughs, quadratic blowup) or
  fetched (external entities); expat itself never opens a file or a socket. A parser
  *target* gets the start and end tags and the text: no tree is built.
  (lxml could be configured for it too, ``resolve_entities=False, no_network=True``, but
  its handling of internal entities changed meaning across releases; refusing the DTD
  outright leaves nothing to configure.)

Each entry is yielded as an :class:`Entry` (its number in the file, its line, ``<loc>``,
``<lastmod>``), each problem as a :class:`Problem` at its place; namespaces are ignored
(many sitemaps get them wrong), and so are extensions' elements (``image:loc`` ...).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

MAX_ENTRIES = 50_000
MAX_BYTES = 50 * 1024 * 1024    # 52,428,800 bytes uncompressed, as the protocol says
MAX_LOC = 2048                  # "less than 2,048 characters"
PIECE = 64 * 1024               # bytes read, and inflated, at a time
MAX_DEPTH = 32                  # a sitemap nests 4 deep (urlset, url, image:image, image:loc)
_GZIP = b"\x1f\x8b"
ROOTS = {"urlset": "url", "sitemapindex": "sitemap"}


@dataclass(slots=True)
class Entry:
    """One ``<url>`` (or, in an index, one ``<sitemap>``)."""

    number: int
    line: int
    loc: str
    lastmod: str | None = None


@dataclass(slots=True)
class Problem:
    """Something wrong at ``line`` (entry ``number`` when inside one); ``stop``: the rest of
    the file is not read."""

    number: int | None
    line: int
    reason: str
    text: str = ""
    stop: bool = False


class _Target:
    """Collects entries from the parser's events (local names: namespaces ignored)."""

    def __init__(self, reader: SitemapReader) -> None:
        self.reader = reader
        self.out: list[Entry | Problem] = []
        self.depth = 0
        self.field: str | None = None
        self.texts: list[str] = []
        self.size = 0
        self.entry: dict[str, Any] | None = None

    def start(self, tag: str, attrib: Any) -> None:
        name = tag.rpartition("}")[2]
        reader = self.reader
        self.depth += 1
        if reader.stopped:
            return
        if self.depth > MAX_DEPTH:  # each open element costs the parser memory: 50 MB of <url> is 10M of them
            reader.stopped = True
            self.out.append(Problem(None, reader.line(), f"elements nested more than {MAX_DEPTH} deep: "
                                    "the rest of this sitemap is not read", stop=True))
            return
        if self.depth == 1:
            if name not in ROOTS:
                reader.stopped = True
                self.out.append(Problem(None, reader.line(), f"not a sitemap: the root element is <{name[:40]}>, "
                                        "not <urlset> or <sitemapindex>", stop=True))
                return
            reader.kind = name
            return
        if self.depth == 2 and name == ROOTS.get(reader.kind or ""):
            reader.entries += 1
            self.entry = {"number": reader.entries, "line": reader.line(), "loc": None, "lastmod": None}
        elif self.depth == 3 and self.entry is not None and name in ("loc", "lastmod"):
            self.field = name
            self.texts = []
            self.size = 0

    def data(self, text: str) -> None:
        if self.field is not None and self.size <= MAX_LOC:
            self.texts.append(text)
            self.size += len(text)

    def end(self, tag: str) -> None:
        self.depth -= 1
        entry = self.entry
        if entry is None:
            return
        if self.depth == 2 and self.field is not None:
            value = "".join(self.texts).strip()
            if entry[self.field] is None:
                entry[self.field] = value
            self.field = None
        elif self.depth == 1:
            self.entry = None
            self._finish(entry)

    def _finish(self, entry: dict[str, Any]) -> None:
        if self.reader.stopped:
            return
        number, line, loc, lastmod = entry["number"], entry["line"], entry["loc"], entry["lastmod"]
        if number > MAX_ENTRIES:
            self.reader.stopped = True
            self.out.append(Problem(number, line, f"more than {MAX_ENTRIES:,} entries (the sitemaps "
                                    "protocol's limit): the rest of this sitemap is not read", stop=True))
            return
        if not loc:
            self.out.append(Problem(number, line, "entry without a <loc>"))
            return
        if len(loc) >= MAX_LOC:
            self.out.append(Problem(number, line, f"<loc> of {MAX_LOC:,} characters or more (the "
                                    "sitemaps protocol's limit)", loc[:200]))
            return
        self.out.append(Entry(number, line, loc, lastmod or None))

    def close(self) -> None:
        return None


class SitemapReader:
    """One sitemap file from ``stream`` (bytes, maybe gzip); :meth:`read` yields its
    entries and problems. ``kind`` is ``urlset`` or ``sitemapindex`` once the root is seen."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.kind: str | None = None
        self.entries = 0
        self.bytes = 0          # uncompressed bytes read so far
        self.stopped = False
        self._target = _Target(self)
        self._parser = DefusedXMLParser(target=self._target, forbid_dtd=True,
                                        forbid_entities=True, forbid_external=True)
        self._expat = self._parser.parser

    def line(self) -> int:
        return int(self._expat.CurrentLineNumber or 1)

    def read(self) -> Iterator[Entry | Problem]:
        for piece in self._pieces():
            if self.stopped:
                break
            if isinstance(piece, Problem):
                yield piece
                return
            self.bytes += len(piece)
            if self.bytes > MAX_BYTES:
                self.stopped = True
                yield Problem(None, self.line(), f"larger than {MAX_BYTES:,} bytes uncompressed (50 MB, the "
                              "sitemaps protocol's limit): the rest of this sitemap is not read", stop=True)
                return
            yield from self._said(self._feed(piece))
            if self.stopped:
                return
        if self.stopped:
            return
        yield from self._said(self._feed(None))

    def _said(self, problem: Problem | None) -> list[Entry | Problem]:
        """What the parser's events found, then the parser's own problem, unless a reason to
        stop came first: one reason to stop, always the last thing said."""
        out = self._target.out
        self._target.out = []
        if problem is not None and not any(isinstance(x, Problem) and x.stop for x in out):
            out.append(problem)
        return out

    def _feed(self, data: bytes | None) -> Problem | None:
        try:
            if data is None:
                self._parser.close()
            else:
                self._parser.feed(data)
        except DefusedXmlException as exc:
            self.stopped = True
            return Problem(None, self.line(), f"refused: {_words(exc)} (a sitemap has no DTD, and XML "
                           "entities could expand without bound)", stop=True)
        except ParseError as exc:
            self.stopped = True
            line, column = getattr(exc, "position", (self.line(), 0))
            words = str(exc).split(":")[0]
            if self.kind is None:
                return Problem(None, line, f"not a sitemap: not XML ({words}, column {column + 1})", stop=True)
            return Problem(None, line, f"not well-formed XML ({words}, column {column + 1}): "
                           "the rest of this sitemap is not read", stop=True)
        except (ValueError, LookupError, RecursionError) as exc:  # a declared encoding expat lacks ...
            self.stopped = True
            return Problem(None, self.line(), f"not readable as XML ({exc})"[:300], stop=True)
        return None

    def _pieces(self) -> Iterator[bytes | Problem]:
        """The file's bytes, inflated when they are gzip, a piece at a time."""
        read = self.stream.read
        first = read(PIECE)
        if not first.startswith(_GZIP):
            while first:
                yield first
                first = read(PIECE)
            return
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pending = first
        while True:
            try:
                while pending:
                    out = inflater.decompress(pending, PIECE)
                    pending = inflater.unconsumed_tail
                    if out:
                        yield out
                    if inflater.eof:
                        rest = inflater.unused_data
                        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # another gzip member
                        pending = rest if rest.startswith(_GZIP) else b""
            except zlib.error as exc:
                yield Problem(None, self.line(), f"not valid gzip ({exc}): the rest of this sitemap is not read",
                              stop=True)
                return
            pending = read(PIECE)
            if not pending:
                return


def _words(exc: DefusedXmlException) -> str:
    name = type(exc).__name__
    return {"DTDForbidden": "a DTD (<!DOCTYPE>)", "EntitiesForbidden": "an entity declaration",
            "ExternalReferenceForbidden": "an external reference"}.get(name, name)


def valid_lastmod(text: str) -> bool:
    """A W3C Datetime, as the sitemaps protocol asks: ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``,
    or a date with a time (``T``) and a zone (``Z`` or ``+hh:mm``)."""
    text = text.strip()
    if len(text) == 4:
        return text.isdigit()
    if len(text) == 7:
        return text[:4].isdigit() and text[4] == "-" and text[5:].isdigit() and 1 <= int(text[5:]) <= 12
    if len(text) == 10 or ("T" in text and (text.endswith("Z") or text[-6:-5] in ("+", "-"))):
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return False
        return text[4:5] == "-"
    return False
