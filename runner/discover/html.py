"""The links of an HTML document, read streaming with lxml (libxml2's HTML parser).

Read: ``a href``, ``img src``/``srcset``, ``link href``, ``script src``, ``iframe src``,
``source src``/``srcset``; the first ``<base href>`` sets the base of the links after it.
An anchor's text and an image's ``alt`` are kept with the link (a crawl shows them beside
a broken link: "where to fix it").

The parser is lxml's HTML parser with a *target*: it calls :class:`_Target` per start tag,
end tag and piece of text, and builds no tree. lxml's feed parser keeps every byte it was
fed until it is closed, so a long document is read by a fresh parser every
:data:`RESTART` bytes, taking over after a line that ends a tag outside ``<script>``,
``<style>``, comments and the like (at :data:`HARD_RESTART` bytes, after any line): memory
stays flat for a document of any size. (A tree, even pruned as it grows, made libxml2 check each new attribute against
every earlier one of its tag: one 170 KB tag of 20,000 attributes took 3 s, a 1 MB one
three minutes. The target gets them as they are: 0.02 s.) The document is fed a line at a
time (a piece of at most :data:`PIECE` bytes of a longer line), so a link's line is the
line where its tag ends.

Encoding: the caller's (an HTTP ``charset``) when it has one; else the document's own
(a byte-order mark or a ``<meta charset>`` / ``http-equiv`` in its first
:data:`SNIFF` bytes, read by the same parser); else UTF-8. Undecodable bytes become U+FFFD.

Nothing here raises for any input: malformed markup is what libxml2's recovering parser
is for, and a document it cannot read at all has no links.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from lxml import etree

from runner.discover.links import Link, base_for, resolve, short_text, srcset_urls

PIECE = 64 * 1024   # bytes fed to the parser at once, at most
SNIFF = 4096        # the first bytes looked at for a declared encoding
RESTART = 4 * 1024 * 1024       # bytes one parser is fed before a fresh one takes over ...
HARD_RESTART = 32 * 1024 * 1024  # ... at a quiet line, or at most this many
RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "noscript", "iframe", "noembed",
                      "noframes", "plaintext"})  # their text is not markup: never cut inside one
# element -> its attributes that hold a link (and which of them are srcset lists)
LINK_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "a": ("href",),
    "img": ("src", "srcset"),
    "link": ("href",),
    "script": ("src",),
    "iframe": ("src",),
    "source": ("src", "srcset"),
}
_WANTED = frozenset((*LINK_ATTRIBUTES, "base"))
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_local = threading.local()


class _Target:
    """lxml's parser target: collects the links of start tags, an open anchor's text."""

    def __init__(self, reader: HtmlLinks) -> None:
        self.reader = reader
        self.line = 1
        self.found: list[Link] = []
        self.anchor: Link | None = None   # the <a> whose text is being collected
        self.raw = 0                      # raw-text elements open (script, style ...)
        self.text: list[str] = []
        self.text_len = 0

    def start(self, tag: Any, attrib: Any) -> None:
        if tag in RAW_TEXT:
            self.raw += 1
        if tag not in _WANTED:
            return
        reader = self.reader
        if tag == "base":
            href = attrib.get("href")
            if href is not None and not reader.base_seen:
                reader.base_seen = True
                reader.base = base_for(href, reader.document)
            return
        for name in LINK_ATTRIBUTES[tag]:
            value = attrib.get(name)
            if value is None:
                continue
            where = f"{tag} {name}"
            raws = srcset_urls(value) if name == "srcset" else [value]
            for raw in raws:
                link = resolve(Link(self.line, where, raw), reader.base)
                if tag == "img":
                    link.text = short_text(attrib.get("alt") or "")
                self.found.append(link)
                if tag == "a":
                    self._finish_anchor()
                    self.anchor = link

    def end(self, tag: Any) -> None:
        if tag in RAW_TEXT and self.raw:
            self.raw -= 1
        if tag == "a" and self.anchor is not None:
            self._finish_anchor()

    def data(self, text: str) -> None:
        if self.anchor is not None and self.text_len < 4 * 200:
            self.text.append(text)
            self.text_len += len(text)

    def _finish_anchor(self) -> None:
        if self.anchor is not None:
            self.anchor.text = short_text("".join(self.text))
        self.anchor = None
        self.text.clear()
        self.text_len = 0

    def close(self) -> None:
        self._finish_anchor()


class _Charset:
    """Finds a ``<meta charset>`` or ``<meta http-equiv="Content-Type" content=...>``."""

    def __init__(self) -> None:
        self.found: str | None = None

    def start(self, tag: Any, attrib: Any) -> None:
        if tag != "meta" or self.found:
            return
        charset = attrib.get("charset")
        if charset is None and (attrib.get("http-equiv") or "").strip().lower() == "content-type":
            content = attrib.get("content") or ""
            _, sep, rest = content.lower().partition("charset=")
            charset = rest.split(";")[0] if sep else None
        if charset:
            self.found = charset.strip().strip("'\"")

    def end(self, tag: Any) -> None:
        pass

    def close(self) -> None:
        pass


def declared_encoding(head: bytes) -> str | None:
    """The encoding a document's first bytes declare: ``"bom"`` for a byte-order mark (the
    parser reads it), a ``<meta>``'s charset as written, or None."""
    if head.startswith(_BOMS):
        return "bom"
    sniffer = getattr(_local, "sniffer", None)
    if sniffer is None:  # one per thread, reused: making a parser with a target costs ~1 ms
        target = _Charset()
        sniffer = _local.sniffer = (target, etree.HTMLParser(target=target, encoding="iso-8859-1"))
    target, parser = sniffer  # ISO-8859-1: ASCII is all a meta needs
    target.found = None
    try:
        parser.feed(head)
        parser.close()
    except (etree.LxmlError, ValueError):
        _local.sniffer = None
    return target.found or None


def _known(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _parser(target: _Target, *names: str | None) -> Any:
    """lxml's HTML parser for the first of ``names`` libxml2 knows (as written, or as Python
    spells it), else UTF-8; ``"bom"``: libxml2 reads the byte-order mark itself."""
    for name in names:
        if not name:
            continue
        tries: list[str | None] = [None] if name == "bom" else [name]
        try:
            python = codecs.lookup(name).name
            tries += [python, python.replace("_", "-")]
        except LookupError:
            pass
        for encoding in tries:
            try:
                return etree.HTMLParser(target=target, encoding=encoding, no_network=True,
                                        remove_comments=True, remove_pis=True)
            except LookupError:
                continue
    return etree.HTMLParser(target=target, encoding="utf-8", no_network=True,
                            remove_comments=True, remove_pis=True)


class HtmlLinks:
    """An HTML document's links, fed a piece at a time (:meth:`feed`, then :meth:`close`).

    ``url`` is the document's URL (or the user's ``--base-url``): relative links are
    resolved against it, or against the ``<base href>`` once one is seen. ``encoding``:
    the HTTP charset when known.
    """

    def __init__(self, url: str | None = None, *, encoding: str | None = None) -> None:
        self.document = url
        self.base = url
        self.base_seen = False
        self.encoding = encoding
        self.bytes = 0
        self._head: list[bytes] = []
        self._head_len = 0
        self._parser: Any = None
        self._names: tuple[str | None, str | None] = (None, None)
        self._wide = False   # UTF-16/32: never cut (a fresh parser could start mid-character)
        self._fed = 0        # bytes the current parser was fed
        self._target = _Target(self)
        self._broken = False

    def feed(self, data: bytes) -> list[Link]:
        """Links whose tags ended in ``data`` (or in what came before it)."""
        self.bytes += len(data)
        if self._parser is None:
            self._head.append(data)
            self._head_len += len(data)
            if self._head_len < SNIFF:
                return []
            data = b"".join(self._head)
            self._head.clear()
            self._start(data)
        self._feed(data)
        return self._take()

    def close(self) -> list[Link]:
        """The last links; the reader is done."""
        if self._parser is None:
            data = b"".join(self._head)
            self._head.clear()
            self._start(data)
            self._feed(data)
        if not self._broken:
            try:
                self._parser.close()
            except (etree.LxmlError, ValueError):
                pass  # an empty or unreadable document: no more links
        self._target.close()
        return self._take()

    def _start(self, head: bytes) -> None:
        declared = None if self.encoding and _known(self.encoding) else declared_encoding(head[:SNIFF])
        self._names = (self.encoding, declared)
        self._parser = _parser(self._target, *self._names)
        self._wide = "16" in str(self._parser_encoding()) or "32" in str(self._parser_encoding())

    def _parser_encoding(self) -> str | None:
        for name in self._names:
            if name and name != "bom" and _known(name):
                return codecs.lookup(name).name
        return "utf-16" if self._names[1] == "bom" else None

    def _feed(self, data: bytes) -> None:
        if self._broken or not data:
            return
        target = self._target
        start, end = 0, len(data)
        try:
            while start < end:
                stop = data.find(b"\n", start, start + PIECE)
                stop = start + PIECE if stop < 0 else stop + 1
                piece = data[start:stop]
                self._parser.feed(piece)
                self._fed += len(piece)
                if piece[-1:] == b"\n":
                    target.line += 1
                    if self._fed >= RESTART and self._quiet(piece):
                        self._restart()
                elif self._fed >= HARD_RESTART and not self._wide:
                    self._restart()
                start = stop
        except (etree.LxmlError, ValueError):
            self._broken = True  # libxml2 gave up on this document: what was found stands

    def _quiet(self, line: bytes) -> bool:
        """Whether the parser has just finished a tag, outside script, style, comments ...:
        a fresh parser can take over after this line and lose nothing."""
        if self._wide or self._target.raw or self._target.anchor is not None:
            return self._fed >= HARD_RESTART and not self._wide
        text = line.rstrip()
        return text.endswith(b">") and text.rfind(b"<!--") <= text.rfind(b"-->")

    def _restart(self) -> None:
        """A fresh parser for the rest of the document. lxml's feed parser keeps every byte
        it was fed until it is closed (100 MB fed, 100 MB held): closing one every few MB
        keeps memory flat. What a parser knows across lines (the base, the line) is ours."""
        try:
            self._parser.close()
        except (etree.LxmlError, ValueError):
            pass
        self._target.raw = 0
        self._parser = _parser(self._target, *self._names)
        self._fed = 0

    def _take(self) -> list[Link]:
        found = self._target.found
        if not found:
            return []
        self._target.found = []
        return found


def html_links(body: bytes, url: str | None = None, *, encoding: str | None = None) -> list[Link]:
    """Every link of an HTML page already in memory (a crawl's checked body), in order."""
    reader = HtmlLinks(url, encoding=encoding)
    return [*reader.feed(body), *reader.close()]


def read_html(chunks: Iterable[bytes], url: str | None = None, *,
              encoding: str | None = None) -> Iterator[Link]:
    """The links of a document read in pieces (a file, a response), as they are found."""
    reader = HtmlLinks(url, encoding=encoding)
    for chunk in chunks:
        yield from reader.feed(chunk)
    yield from reader.close()
