"""A link found in a document, and how it becomes an absolute URL (or is skipped).

Every reader (HTML, Markdown) yields :class:`Link` values in document order; each is
resolved here the same way:

* ASCII tab and newline are removed and the ends are stripped of spaces and control
  characters, as the URL Standard does before parsing (``java\\tscript:`` is ``javascript:``);
* ``mailto:``, ``tel:``, ``javascript:`` and ``data:`` links, and a bare ``#fragment`` (or an
  empty link: the document itself) are skipped, with the kind counted by the caller;
* anything else is resolved against the base (``<base href>``, else the document's URL or
  the user's ``--base-url``) with :func:`urllib.parse.urljoin`; a relative link without a
  base has a ``problem`` instead of a URL.

Whether the result is a URL urltester can check (http or https, a host) is the caller's
question, answered by the same validation as any other input, so a bad link is named
with its place like a bad line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

SKIPPED_SCHEMES = ("mailto", "tel", "javascript", "data")
SKIPPED_KINDS = (*SKIPPED_SCHEMES, "fragment")  # the report's order
TEXT_MAX = 200     # a link's text is kept up to this many characters
RAW_MAX = 8192     # a link longer than this is refused, not resolved
_STRIP = "".join(chr(c) for c in range(0x21))  # C0 controls and space
_REMOVED = str.maketrans("", "", "\t\n\r")


@dataclass(slots=True)
class Link:
    """One link of a document.

    ``url`` is absolute (resolved) unless the link is ``skipped`` (one of
    :data:`SKIPPED_KINDS`) or has a ``problem`` (why it cannot be resolved). ``where`` says
    what held it (``a href``, ``img srcset``, ``markdown image``, ``raw URL`` ...), ``line``
    its line in the document (1-based), ``text`` an anchor's text or an image's alt text.
    """

    line: int
    where: str
    raw: str
    url: str | None = None
    skipped: str | None = None
    problem: str | None = None
    text: str = ""


def clean(raw: str) -> str:
    """The link as the URL Standard parses it: no tab or newline, no surrounding controls."""
    if "\t" in raw or "\n" in raw or "\r" in raw:
        raw = raw.translate(_REMOVED)
    return raw.strip(_STRIP)


def scheme_of(text: str) -> str | None:
    """The link's scheme (lowercase), or None for a relative link."""
    colon = text.find(":")
    if colon <= 0:
        return None
    scheme = text[:colon]
    if not scheme[0].isascii() or not scheme[0].isalpha():
        return None
    if not all(c.isascii() and (c.isalnum() or c in "+-.") for c in scheme):
        return None
    return scheme.lower()


def resolve(link: Link, base: str | None) -> Link:
    """Fill ``link.url`` (or ``skipped``/``problem``) from ``link.raw`` and ``base``."""
    text = clean(link.raw)
    if len(text) > RAW_MAX:
        link.problem = f"link longer than {RAW_MAX:,} characters"
        return link
    if not text or text.startswith("#"):
        link.skipped = "fragment"
        return link
    scheme = scheme_of(text)
    if scheme in SKIPPED_SCHEMES:
        link.skipped = scheme
        return link
    if base is None or (scheme in ("http", "https") and text[len(scheme) + 1:len(scheme) + 3] == "//"):
        if scheme is None:
            link.problem = "relative link and no base URL to resolve it against (give --base-url)"
        else:
            link.url = text  # absolute: nothing to resolve (urljoin was half the HTML reader's time)
        return link
    try:
        link.url = _join(base, text)
    except ValueError as exc:  # urljoin refuses e.g. an unclosed IPv6 bracket
        link.problem = f"not a URL ({exc})"
    return link


@lru_cache(maxsize=4096)
def _join(base: str, text: str) -> str:
    """``urljoin``, remembered: a site's pages repeat their navigation links."""
    return urljoin(base, text)


def base_for(href: str, document: str | None) -> str | None:
    """A ``<base href>``'s URL: resolved against the document's URL; None if unusable."""
    text = clean(href)
    if not text:
        return document
    scheme = scheme_of(text)
    if scheme is None:
        if document is None:
            return None
        try:
            text = urljoin(document, text)
        except ValueError:
            return None
    elif scheme not in ("http", "https"):
        return document
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme in ("http", "https") and parts.netloc else None


def srcset_urls(value: str) -> list[str]:
    """The image candidate URLs of a ``srcset`` attribute, as the HTML Standard splits them.

    ``a.png 1x, b.png 2x`` and ``a.png 1x,b.png 2x``: a URL runs to whitespace (commas
    inside it stay: ``data:`` URLs have them); a trailing comma ends a candidate without
    descriptors; descriptors run to a comma outside parentheses.
    """
    urls: list[str] = []
    pos, end = 0, len(value)
    spaces = " \t\n\r\f"
    while True:
        while pos < end and (value[pos] in spaces or value[pos] == ","):
            pos += 1
        if pos >= end:
            return urls
        start = pos
        while pos < end and value[pos] not in spaces:
            pos += 1
        url = value[start:pos]
        if url.endswith(","):
            urls.append(url.rstrip(","))
            continue
        urls.append(url)
        depth = 0
        while pos < end:  # the descriptors, up to the comma that ends this candidate
            c = value[pos]
            pos += 1
            if c == "(":
                depth += 1
            elif c == ")" and depth:
                depth -= 1
            elif c == "," and not depth:
                break


def short_text(text: str) -> str:
    """An anchor's text as shown beside a link: whitespace collapsed, capped."""
    return " ".join(text[: TEXT_MAX * 4].split())[:TEXT_MAX]
