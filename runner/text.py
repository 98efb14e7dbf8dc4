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


def printable(value: object, limit: int | None = None) -> str:
    """``value`` as one line of text that is safe to write to a terminal."""
    if value is None:
        return ""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``; safe for output, logs and the UI.

    Used for every URL urltester shows: targets, the database URL and the broker URL.
    """
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()
