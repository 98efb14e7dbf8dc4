"""The two databases the store speaks to: PostgreSQL (production, :mod:`db.postgres`) and
SQLite (embedded, :mod:`db.sqlite`), behind one interface, :class:`Dialect`.

Each dialect owns its connections and turns Python values into what its driver stores.
SQL in the store's modules is written once with ``%s`` placeholders; the SQLite cursor
rewrites them. Where the two must differ (COPY, execute_values, LIKE, booleans, the
schema's lock), the store asks its dialect (:class:`Dialect`), never which one it is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, overload

from .states import taken_back

COPY_FROM = 100  # jobs in one insert from which COPY beats INSERT on PostgreSQL


class Dialect:
    """What differs between the two databases, so that the store's SQL is written once.

    Every ``isinstance(dialect, ...)`` the store once had is a method or attribute here.
    """

    name: str
    url: str
    migrations: list[tuple[int, list[str]]]  # db/migrations: this dialect's list
    ilike = "LIKE"  # case-insensitive LIKE (SQLite's LIKE is, for ASCII)

    def contains(self, column: str, text: str) -> tuple[str, str]:
        """``column`` holds ``text`` (any case), taken literally: ``%``, ``_`` and ``\\`` in it
        match themselves. The SQL test and its one parameter."""
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"{column} {self.ilike} %s ESCAPE '\\'", f"%{escaped}%"

    @contextmanager
    def transaction(self, *, write: bool = True,
                    announce: bool = False) -> Iterator[Any]:  # pragma: no cover - interface
        """A cursor in a transaction, committed at the end. ``write=False`` promises only
        reads, so SQLite need not take its one write lock (PostgreSQL ignores it).
        ``announce``: jobs or results changed, and every :meth:`listen` er hears of it once
        the transaction commits."""
        raise NotImplementedError
        yield

    def listen(self) -> Any:  # pragma: no cover - interface
        """An object whose ``wait(timeout)`` returns True when a transaction announced a change."""
        raise NotImplementedError

    def boolean(self, value: bool) -> Any:
        """A boolean as a parameter (SQLite stores 0 and 1)."""
        return value

    def has_table(self, cur: Any, name: str) -> bool:  # pragma: no cover - interface
        """Whether the table exists, asked without writing (no lock, no race to create it)."""
        raise NotImplementedError

    def lock_schema(self, cur: Any) -> None:
        """Serialise migrations: several workers may start at once and one migrates."""

    def insert_jobs(self, cur: Any, batch_id: int | None, jobs: Sequence[tuple[str, str, int | None]],
                    now: datetime) -> list[int]:  # pragma: no cover - interface
        """``(url, options JSON, url id)`` rows into jobs (state queued) in ``cur``'s
        transaction; their ids, in order."""
        raise NotImplementedError

    def json_text(self, column: str, *path: str) -> str:  # pragma: no cover - interface
        """SQL for the text at ``path`` inside a JSON column (our own names only)."""
        raise NotImplementedError

    def vacuum(self, tables: Sequence[str]) -> None:
        """Make the space of deleted rows reusable now (``runner prune``), so a table that
        loses a day and gains a day stays the same size. Writers are not blocked."""

    def update_rows(self, cur: Any, table: str, columns: Sequence[tuple[str, str]],
                    rows: Sequence[Sequence[Any]]) -> None:  # pragma: no cover - interface
        """``UPDATE table SET column = value, ... WHERE id = row[0]`` for each row (``id``
        first, then one value per ``(column, PostgreSQL type)``), in one round trip where
        the driver can. A None value leaves a column whose name ends in ``?`` as it was."""
        raise NotImplementedError

    def counts_add(self, old: str, new: str) -> str:  # pragma: no cover - interface
        """SQL for two JSON objects of counts added key by key (``{"ok": 3}`` and
        ``{"ok": 1, "http_error": 1}``: ``{"ok": 4, "http_error": 1}``)."""
        raise NotImplementedError

    def json_pairs(self, column: str) -> str:  # pragma: no cover - interface
        """A table function over a JSON object column's members, as ``key`` and ``value``
        (used in FROM beside the table, correlated)."""
        raise NotImplementedError

    for_update = ""  # a SELECT's row lock (SQLite has one writer: the transaction is the lock)

    def upsert_urls(self, cur: Any, urls: Sequence[str],
                    now: datetime) -> dict[str, int]:  # pragma: no cover - interface
        """The ``urls`` ids of these URLs, adding those not known yet (state pending), in
        ``cur``'s transaction. New rows go in sorted order, so two transactions adding the
        same URLs wait for each other instead of deadlocking."""
        raise NotImplementedError

    def insert_returning(self, cur: Any, head: str, rows: Sequence[Sequence[Any]], tail: str,
                         types: Sequence[str] = ()) -> list[Any]:  # pragma: no cover - interface
        """``head`` (``INSERT INTO t (columns) VALUES``) for each row, then ``tail`` (``ON
        CONFLICT ... RETURNING ...``): the rows RETURNING gave, in one round trip where the
        driver can; with ``types`` (the columns' PostgreSQL types), as :mod:`db.jsonrows`."""
        raise NotImplementedError

    def mark_running(self, cur: Any, started: Sequence[tuple[int, datetime]]) -> None:
        """Jobs not yet done become running, each with its own ``started_at`` (when its
        check began, which may be earlier than this write)."""
        cur.executemany("UPDATE jobs SET state = 'running', started_at = %s "
                        f"WHERE id = %s AND state IN ('queued', 'running') AND NOT {taken_back('jobs')}",
                        [(self.ts(at), job_id) for job_id, at in started])

    def ts(self, value: datetime | None) -> Any:
        return value

    @overload
    def parse_ts(self, value: datetime | str) -> datetime: ...
    @overload
    def parse_ts(self, value: None) -> None: ...
    def parse_ts(self, value: Any) -> datetime | None:
        parsed: datetime | None = value  # the driver's own
        return parsed

    def json(self, value: Any) -> Any:
        raise NotImplementedError

    def parse_json(self, value: Any) -> Any:
        return value

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """An SQL test that ``column`` is one of ``values``, and its parameters."""
        raise NotImplementedError

    def lock_jobs(self, cur: Any, ids: Sequence[int]) -> None:
        """Lock these job rows in id order before updating them.

        Workers (running, done) and submitters (published) update overlapping sets of jobs
        at once; when every transaction takes its row locks in one order, they wait for each
        other instead of deadlocking. Call it once per transaction, with every id it updates.
        """

    #: Appended to a claiming SELECT: rows another transaction holds are passed over, not
    #: waited for (SQLite has one writer at a time, so nothing is ever held there).
    skip_locked = ""

    def try_lock(self, cur: Any, key: int) -> bool:
        """Take a lock on ``key`` (a 63-bit integer) until the transaction ends, or False at
        once when another transaction holds it."""
        return True

    def lock_batch(self, cur: Any, batch_id: int) -> None:
        """A cancel's lock on a batch: it waits for the :meth:`share_batches` holders (and
        they for it), so its count is exact. SQLite has one writer: nothing to wait for."""

    def share_batches(self, cur: Any, job_ids: Sequence[int]) -> None:
        """Before moving jobs out of ``queued``: their batches' cancel locks, shared."""

    def in_index_order(self, cur: Any) -> None:
        """Make this transaction's statements read rows by index scans only, so that an
        UPDATE over a range of one index (``state, id``; ``batch_id, id``) locks its rows in
        id order, as :meth:`lock_jobs` does, without a separate locking pass. SQLite has one
        writer at a time: nothing to order."""

    def close(self) -> None:
        pass
