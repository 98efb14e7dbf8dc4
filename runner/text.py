"""Making user data safe to print: no terminal escapes, no control characters, no passwords.

URLs, titles, headers and errors come from strangers' servers and import files. Before
they reach a terminal, every control character (C0, DEL, C1, which include ESC and CSI)
is replaced by a visible escape such as ``\\x1b``, so nothing can move the cursor,
recolour the screen or set the window title.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def ascii_digits(text: str) -> bool:
    """Only the digits 0-9: ``str.isdigit`` also says yes to ``①`` and ``¹`` (which ``int``
    refuses) and to ``٣`` (which ``int`` reads as 3)."""
    return text.isascii() and text.isdigit()


def printable(value: object, limit: int | None = None) -> str:
    """``value`` as one line of text that is safe to write to a terminal."""
    if value is None:
        return ""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                        text)


_SCHEME = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*)?://")
_PORT_AND_PATH = re.compile(r"\d{0,5}/")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd)=)([^&#]*)", re.IGNORECASE)


def password_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``url`` is, as ``(start, end)``, or None if it has none.

    ``urlsplit`` ends the authority at the first ``/``, ``?`` or ``#``, but libpq and users
    do not: ``postgresql://u:pa#ss@host/db`` has the password ``pa#ss``, which urlsplit
    reads as user ``u``, "port" ``pa`` and a fragment. When urlsplit finds no ``@`` in the
    authority, the userinfo is taken to run to the last ``@`` of the URL, unless what
    precedes the first ``:`` holds ``/?#`` (the ``@`` is in a path or query) or the ``:``
    is followed by a port and a path (``host:8443/@user``).
    """
    match = _SCHEME.match(url)
    start = match.end() if match else 0
    try:
        netloc = urlsplit(url).netloc if match else ""
    except ValueError:
        netloc = ""
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        colon = userinfo.find(":")
        return None if colon < 0 else (start + colon + 1, start + len(userinfo))
    at = url.rfind("@", start)
    if at < 0:
        return None
    userinfo = url[start:at]
    colon = userinfo.find(":")
    if colon < 0 or any(c in userinfo[:colon] for c in "/?#") or _PORT_AND_PATH.match(userinfo, colon + 1):
        return None
    return start + colon + 1, at


# What json.dumps(ensure_ascii=False) leaves raw and a terminal would act on: DEL, C1
# (including the 8-bit CSI), line/paragraph separators and the bidi overrides and isolates.
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_safe(encoded: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with every character a
    terminal would act on written as a ``\\uXXXX`` escape: the same JSON to a parser.

    Those characters can only occur inside JSON strings, where the escape is valid.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)


_INNER_PASSWORD = re.compile(
    r"(?i)(=[A-Za-z][A-Za-z0-9+.-]*(?::|%3A)(?://|%2F%2F)(?:(?!%3A|%40)[^:@/?#&=\s])*(?::|%3A))"
    r"((?:(?!%40)[^@/?#&\s])+)(@|%40)")


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``; safe for output, logs and the UI.

    Used for every URL urltester shows: targets, the database URL and the broker URL, in
    whatever shape they come (see :func:`password_span`; a ``password=`` query parameter,
    which libpq reads, is masked too).
    """
    span = password_span(url)
    if span is not None:
        url = f"{url[:span[0]]}***{url[span[1]:]}"
    if "=" in url:
        url = _QUERY_PASSWORD.sub(lambda m: m.group(1) + ("***" if m.group(2) else ""), url)
        # A URL in the query (``?to=http://u:pw@host/``, or percent-encoded) has its password too.
        url = _INNER_PASSWORD.sub(lambda m: m.group(1) + "***" + m.group(3), url)
    return url


def url_password(url: str) -> str | None:
    """The password in ``url`` (as written), to scrub from an error text that may quote it."""
    span = password_span(url)
    return None if span is None or span[0] == span[1] else url[span[0]:span[1]]
