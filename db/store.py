"""The store: every read and write of jobs, results, batches and worker heartbeats.

All SQL of the project lives in this package, with values passed as parameters. The
same methods serve PostgreSQL and SQLite: where the two differ, the store asks its
dialect (:mod:`db.dialects`). Methods return plain dataclasses.

:class:`Store` is the one object callers hold; its methods live by table, one part per
module: the schema (:mod:`db.schema`), jobs and batches written (:mod:`db.jobs`), results
(:mod:`db.results`), jobs read with their results (:mod:`db.listing`) and heartbeats
(:mod:`db.workers`). Reads beside them take a store: :mod:`db.batches`, :mod:`db.crawls`, :mod:`db.regional`,
:mod:`db.feed`, :mod:`db.grid`, :mod:`db.tokens`; host limits have their own connections
(:mod:`db.limits`).
"""

from __future__ import annotations

from typing import Any

from .connect import open_dialect
from .dialects import COPY_FROM, Dialect
from .jobs import Jobs
from .limits import LimitStore
from .listing import Listing, tally
from .models import NewJob, utcnow
from .results import Results
from .schema import Schema
from .workers import Workers

__all__ = ["COPY_FROM", "NewJob", "Store", "open_store", "tally", "utcnow"]


class Store(Schema, Jobs, Results, Listing, Workers):
    """Jobs, results, batches and heartbeats in one database.

    Thread-safe: each call takes a connection from the dialect's pool for one transaction.
    Raises :class:`db.errors.StoreUnavailable` when the database cannot be reached; nothing
    was written then, and the caller may retry the call.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._limits: LimitStore | None = None

    @property
    def kind(self) -> str:
        return self.dialect.name

    @property
    def url(self) -> str:
        return self.dialect.url

    def close(self) -> None:
        if self._limits is not None:
            self._limits.close()
        self.dialect.close()

    @property
    def limits(self) -> LimitStore:
        """Per-host limits and pacing (:mod:`db.limits`), with connections of its own."""
        if self._limits is None:
            self._limits = LimitStore(self.dialect)
        return self._limits

    def listener(self) -> Any:
        """An object whose ``wait(timeout)`` returns True when jobs or results changed."""
        return self.dialect.listen()


def open_store(url: str, *, max_connections: int = 8, migrate: bool = True) -> Store:
    """A store for a database URL (``postgresql://…`` or ``sqlite:///path``).

    With ``migrate`` the schema is brought up to date (safe with concurrent starters).
    """
    store = Store(open_dialect(url, max_connections=max_connections))
    if migrate:
        store.migrate()
    return store
