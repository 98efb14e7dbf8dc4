"""The links of a Markdown document, read with markdown-it-py (CommonMark, with GFM's
tables, strikethrough and linkify), in chunks.

Read: inline links and images, reference links (each definition is a link of its own,
at its line; a use in the same chunk too), autolinks (``<https://...>``), raw URLs
(``https://...``, and ``www.example.com`` where the top-level domain is a known one:
linkify-it-py, as GitHub renders them), and the
links of HTML written inside the Markdown (``<img src>``, ``<a href>``: the HTML reader).
Every link is handed over as written: markdown-it's own refusal of ``javascript:`` and
``data:`` links is turned off, so they are skipped and counted like any other.

markdown-it parses a whole text at once, and its tokens cost up to 400 bytes of memory
per byte of text (64 KiB of ``*a* `` make 25 MB of tokens), so a long document is cut into
chunks of about :data:`CHUNK` characters at a blank line followed by a line that starts a
new top-level block (not indented, outside a fenced code block). A document that offers no
such line for :data:`HARD_CHUNK` characters (one huge code block or list) is cut at a line
anyway, a fence being reopened in the next chunk, so memory stays bounded whatever the
document. A reference used in one chunk and defined in another loses nothing: its
definition is a link at its own line. Lines are the document's (a chunk knows its first
line); a link's line is its block's first line plus the line breaks before it inside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from markdown_it import MarkdownIt

from runner.discover.html import html_links
from runner.discover.links import Link, resolve, short_text

CHUNK = 64 * 1024         # characters per markdown-it parse, about
HARD_CHUNK = 4 * CHUNK    # ... at most

_md: MarkdownIt | None = None


def _parser() -> MarkdownIt:
    global _md
    if _md is None:
        md = MarkdownIt("gfm-like", {"linkify": True, "html": True})
        md.validateLink = lambda url: True  # type: ignore[method-assign]  # every link reaches us; we skip and count
        md.linkify.set({"fuzzy_email": False})  # type: ignore[union-attr]  # there: linkify is on. A raw e-mail address would be a skipped mailto:
        # Links as written: resolving and normalising them is the caller's (as for HTML's);
        # markdown-it's own percent-encoding and punycode took a third of the parse.
        md.normalizeLink = _as_written  # type: ignore[method-assign]  # the link as written
        md.normalizeLinkText = _as_written  # type: ignore[method-assign,assignment]  # the link text as written
        _md = md
    return _md


def _as_written(url: str) -> str:
    return url


def markdown_links(text: str, url: str | None = None, *, first_line: int = 1) -> list[Link]:
    """Every link of a Markdown text (a document, or a chunk of one starting at ``first_line``)."""
    env: dict[str, Any] = {}
    if "\r" in text:  # CommonMark ends a line at a lone CR too; a file's lines end at LF
        text = text.replace("\r\n", "\n").replace("\r", " ")
    try:
        tokens = _parser().parse(text, env)
    except (RecursionError, ValueError):  # pathological nesting: markdown-it's limits
        return []
    found: list[Link] = []
    for token in tokens:
        line = first_line + (token.map[0] if token.map else 0)
        if token.type == "inline" and token.children:
            _inline(token.children, line, url, found)
        elif token.type == "html_block":
            _html(token.content, line, url, found)
    for ref in (env.get("references") or {}).values():
        mapped = ref.get("map")
        line = first_line + (mapped[0] if mapped else 0)
        found.append(resolve(Link(line, "markdown reference", ref.get("href") or ""), url))
    return found


def _inline(children: list[Any], line: int, url: str | None, found: list[Link]) -> None:
    anchor: Link | None = None
    text: list[str] = []
    for child in children:
        kind = child.type
        if kind in ("softbreak", "hardbreak"):
            line += 1
        elif kind == "link_open":
            where = {"autolink": "markdown autolink", "linkify": "raw URL"}.get(child.markup, "markdown link")
            anchor = resolve(Link(line, where, str(child.attrs.get("href") or "")), url)
            found.append(anchor)
            text.clear()
        elif kind == "link_close":
            if anchor is not None:
                anchor.text = short_text("".join(text))
            anchor = None
        elif kind == "image":
            link = resolve(Link(line, "markdown image", str(child.attrs.get("src") or "")), url)
            link.text = short_text(child.content or "")
            found.append(link)
        elif kind == "html_inline":
            _html(child.content, line, url, found)
        elif anchor is not None and kind in ("text", "code_inline") and len(text) < 64:
            text.append(child.content)


def _html(content: str, line: int, url: str | None, found: list[Link]) -> None:
    for link in html_links(content.encode("utf-8"), url, encoding="utf-8"):
        link.line += line - 1
        found.append(link)


def _fence(line: str) -> tuple[str, int] | None:
    """``(char, length)`` when the line opens or closes a code fence (``` or ~~~)."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or stripped[:1] not in ("`", "~"):
        return None
    char = stripped[0]
    length = len(stripped) - len(stripped.lstrip(char))
    return (char, length) if length >= 3 else None


def chunks(lines: Iterable[tuple[int, str]], size: int = CHUNK) -> Iterator[tuple[int, str]]:
    """``(first line number, text)`` pieces of a document given as numbered lines."""
    hard = size * HARD_CHUNK // CHUNK
    buf: list[str] = []
    first = 1
    length = 0
    fence: tuple[str, int] | None = None
    fence_line = ""
    blank_before = False
    for number, line in lines:
        if not buf:
            first = number
        starts_block = line[:1] not in ("", " ", "\t", "\n", "\r")
        if length >= size and ((blank_before and fence is None and starts_block) or length >= hard):
            yield first, "".join(buf)
            buf.clear()
            length = 0
            first = number
            if fence is not None:  # cut inside a fenced block: it goes on in the next chunk
                buf.append(fence_line)
                length = len(fence_line)
                first = number - 1
        mark = _fence(line)
        if mark is not None:
            if fence is None:
                fence, fence_line = mark, line if line.endswith("\n") else line + "\n"
            elif mark[0] == fence[0] and mark[1] >= fence[1] and not line.strip().strip(mark[0]):
                fence = None
        buf.append(line)
        length += len(line)
        blank_before = not line.strip()
    if buf:
        yield first, "".join(buf)


def read_markdown(lines: Iterable[tuple[int, str]], url: str | None = None, *,
                  size: int = CHUNK) -> Iterator[Link]:
    """The links of a document given as numbered lines (each with its line ending)."""
    for first, text in chunks(lines, size):
        yield from markdown_links(text, url, first_line=first)
