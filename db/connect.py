"""Which database a URL names: :func:`open_dialect` (a module of its own, so that the
interface, :mod:`db.dialects`, imports neither driver)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from .dialects import Dialect
from .errors import StoreConfigError
from .postgres import Postgres
from .sqlite import Sqlite


def open_dialect(url: str, max_connections: int = 8) -> Dialect:
    """The dialect for a database URL; StoreConfigError names what is wrong with it."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise StoreConfigError(f"database URL is not a URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres"):
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise StoreConfigError("database URL names no host")
        return Postgres(url, max_connections=max_connections)
    if scheme == "sqlite":
        # sqlite:///relative/or/absolute, sqlite:////abs, sqlite:// (in memory)
        raw = unquote(url[len("sqlite://"):])
        if raw in ("", "/", "/:memory:"):
            path = ":memory:"
        else:
            path = raw[1:] if raw.startswith("/") and not raw.startswith("//") else raw
            if raw.startswith("//"):
                path = raw[1:]
            path = os.path.expanduser(path)
        return Sqlite(url, path)
    shown = scheme or "(none)"
    raise StoreConfigError(
        f"database URL: unsupported scheme {shown!r}; "
        "use postgresql://user@host/db or sqlite:///path/to/file.db"
    )
