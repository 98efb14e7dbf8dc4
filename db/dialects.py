"""The two databases the store speaks to: PostgreSQL (production) and SQLite (embedded).

Each dialect owns its connections and turns Python values into what its driver stores.
SQL in the store's modules is written once with ``%s`` placeholders; the SQLite cursor
rewrites them. Where the two must differ (COPY, execute_values, LIKE, booleans, the
schema's lock), the store asks its dialect (:class:`Dialect`), never which one it is.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload
from urllib.parse import unquote, urlsplit

from . import jsonrows, migrations
from .errors import StoreConfigError, StoreUnavailable
from .states import taken_back

NOTIFY_CHANNEL = "urltester"
COPY_FROM = 100  # jobs in one insert from which COPY beats INSERT on PostgreSQL
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    # Normalised URLs and JSON text almost never need escaping; translate() is slow.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


class Dialect:
    """What differs between the two databases, so that the store's SQL is written once.

    Every ``isinstance(dialect, ...)`` the store once had is a method or attribute here.
    """

    name: str
    url: str
    migrations: list[tuple[int, list[str]]]  # db/migrations.py: this dialect's list
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


# ---------------------------------------------------------------------------- PostgreSQL


class Postgres(Dialect):
    """psycopg2 with a small pool of its own.

    The pool is ours (not psycopg2.pool) because after a server restart every idle
    connection is dead: on the first broken one we drop them all, so a retry gets a fresh
    connection instead of the next corpse.
    """

    name = "postgresql"
    migrations = migrations.POSTGRES
    ilike = "ILIKE"

    def __init__(self, url: str, max_connections: int = 8) -> None:
        import psycopg2
        import psycopg2.extensions
        import psycopg2.extras

        self._pg = psycopg2
        self._extras = psycopg2.extras
        self.url = url
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        psycopg2.extensions.register_adapter(dict, psycopg2.extras.Json)

    def connect(self, autocommit: bool = False) -> Any:
        try:
            conn = self._pg.connect(
                self.url, connect_timeout=5, application_name="urltester",
                keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
            )
        except self._pg.OperationalError as exc:
            text = _first_line(exc, self.url)
            raise StoreUnavailable(text, refused=any(sign in text for sign in _REFUSED_SETTINGS)) from exc
        except self._pg.ProgrammingError as exc:  # malformed DSN
            raise StoreConfigError(f"database URL: {_first_line(exc, self.url)}") from exc
        try:
            conn.autocommit = autocommit
            if not autocommit:
                with conn.cursor() as cur:
                    cur.execute("SET TIME ZONE 'UTC'")
                conn.commit()
        except (self._pg.OperationalError, self._pg.InterfaceError) as exc:
            # The server may drop a connection it has just accepted (terminated, restarting):
            # that is unavailability too, never an error a caller would not retry.
            _close_quietly(conn)
            raise StoreUnavailable(_first_line(exc, self.url)) from exc
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True, announce: bool = False) -> Iterator[Any]:
        self._slots.acquire()
        conn = None
        broken = False
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self.connect()
            try:
                with conn.cursor() as cur:
                    yield cur
                    if announce:  # delivered to listeners at commit, and only then
                        cur.execute(f"NOTIFY {NOTIFY_CHANNEL}")
                conn.commit()
            except (self._pg.OperationalError, self._pg.InterfaceError) as exc:
                broken = True
                raise StoreUnavailable(_first_line(exc, self.url)) from exc
            except self._pg.DatabaseError as exc:
                if conn.closed:  # a lost connection libpq could not name (e.g. "no message from the libpq")
                    raise StoreUnavailable(_first_line(exc, self.url)) from exc
                conn.rollback()
                raise
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
        finally:
            if conn is not None:
                if broken or conn.closed:
                    _close_quietly(conn)
                    with self._lock:
                        stale, self._idle = self._idle, []
                    for other in stale:
                        _close_quietly(other)
                else:
                    with self._lock:
                        self._idle.append(conn)
            self._slots.release()

    def json(self, value: Any) -> Any:
        return self._extras.Json(value)

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    def lock_jobs(self, cur: Any, ids: Sequence[int]) -> None:
        cur.execute("SELECT id FROM jobs WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sorted(set(ids)),))

    _BATCH_LOCKS = 0x75726C63  # two-int advisory keys (apart from the 64-bit ones): this, the batch id

    def lock_batch(self, cur: Any, batch_id: int) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s, (%s %% 2147483647)::int)", (self._BATCH_LOCKS, batch_id))

    def share_batches(self, cur: Any, job_ids: Sequence[int]) -> None:
        cur.execute(f"SELECT pg_advisory_xact_lock_shared({self._BATCH_LOCKS}, k) FROM (SELECT DISTINCT "
                    "(batch_id %% 2147483647)::int AS k FROM jobs WHERE id = ANY(%s) AND batch_id IS NOT NULL) b "
                    "ORDER BY k", (sorted(set(job_ids)),))

    def in_index_order(self, cur: Any) -> None:
        # A bitmap heap scan or a sequential scan visits rows in the table's physical order.
        cur.execute("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off")

    def has_table(self, cur: Any, name: str) -> bool:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(cur.fetchone()[0])

    def lock_schema(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (0x75726C74,))

    skip_locked = " FOR UPDATE SKIP LOCKED"

    def try_lock(self, cur: Any, key: int) -> bool:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,))
        return bool(cur.fetchone()[0])

    def execute_values(self, cur: Any, sql: str, rows: Sequence[Sequence[Any]], fetch: bool = False,
                       template: str | None = None) -> list[Any]:
        return self._extras.execute_values(cur, sql, rows, template=template, page_size=1000, fetch=fetch) or []

    def insert_returning(self, cur: Any, head: str, rows: Sequence[Sequence[Any]], tail: str,
                         types: Sequence[str] = ()) -> list[Any]:
        if types and rows and jsonrows.execute(cur, head.removesuffix("VALUES "), types, rows, tail):
            return cur.fetchall() if "RETURNING" in tail else []
        return self.execute_values(cur, head + "%s" + tail, rows, fetch="RETURNING" in tail)

    def mark_running(self, cur: Any, started: Sequence[tuple[int, datetime]]) -> None:
        self.update_rows(cur, "jobs", (("state", "text"), ("started_at", "timestamptz")),
                         [(job_id, "running", at) for job_id, at in started],
                         where=f"t.state IN ('queued', 'running') AND NOT {taken_back('t')}")

    def insert_jobs(self, cur: Any, batch_id: int | None, jobs: Sequence[tuple[str, str, int | None]],
                    now: datetime) -> list[int]:
        """By COPY from ``COPY_FROM`` jobs on (several times faster than a multi-row INSERT
        ... RETURNING), by one INSERT below (one round trip)."""
        if len(jobs) >= COPY_FROM:
            return self.copy_jobs(cur, batch_id, jobs, now)
        rows = [(batch_id, url, options, "queued", now, url_id) for url, options, url_id in jobs]
        return [r[0] for r in self.execute_values(
            cur, "INSERT INTO jobs (batch_id, url, options, state, submitted_at, url_id) VALUES %s RETURNING id",
            rows, fetch=True, template="(%s, %s, %s::jsonb, %s, %s, %s)")]

    for_update = " FOR UPDATE"

    def vacuum(self, tables: Sequence[str]) -> None:
        """``VACUUM (ANALYZE)`` of each table, while a second connection commits a transaction
        that takes an id every 5 ms (a thousand or so ids for a prune of 1M jobs; commits
        not flushed one by one).

        Why: a B-tree page the VACUUM empties can be reused once no transaction may still
        read it, and PostgreSQL (14 on) checks that at the end of the same VACUUM, but only
        transaction ids handed out in the meantime can prove it. On a database nobody else
        writes to at that moment, none are: the day's index pages then wait for the next
        VACUUM (the next prune), and the next day's entries extend the indexes instead of
        reusing them: one more day of index pages, for good (docs/performance.md). A page
        emptied in the last few ms of an index's scan still waits: a small index is scanned
        in tens of ms, hence 5 ms."""
        conn = self.connect(autocommit=True)  # VACUUM runs outside a transaction
        done = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(done,), name="vacuum-xids", daemon=True)
        ticker.start()
        try:
            with conn.cursor() as cur:
                for table in tables:
                    cur.execute(f"VACUUM (ANALYZE) {table}")  # our own names
        except (self._pg.OperationalError, self._pg.InterfaceError) as exc:
            raise StoreUnavailable(_first_line(exc, self.url)) from exc
        finally:
            done.set()
            ticker.join(timeout=5)  # (a hung server: the daemon thread is left behind)
            _close_quietly(conn)

    def _tick(self, done: threading.Event) -> None:
        """:meth:`vacuum`'s transaction ids, until ``done`` (best effort: a failure only
        leaves the pages to the next VACUUM)."""
        try:
            conn = self.connect(autocommit=True)
        except StoreUnavailable:
            return
        try:
            with conn.cursor() as cur:
                cur.execute("SET synchronous_commit TO off")  # ids, not durability: no flush each
                while not done.wait(0.005):
                    cur.execute("SELECT txid_current()")
        except self._pg.Error:
            pass
        finally:
            _close_quietly(conn)

    def json_text(self, column: str, *path: str) -> str:
        return f"({column} #>> '{{{','.join(path)}}}')"

    def json_pairs(self, column: str) -> str:
        return f"json_each_text({column}::json)"

    def counts_add(self, old: str, new: str) -> str:
        # Each key of the new object set to the sum, inline (11 µs; urltester_counts_add 41 µs).
        return (f"(({old})::jsonb || COALESCE((SELECT jsonb_object_agg(key, value::bigint + "
                f"COALESCE((({old})::jsonb ->> key)::bigint, 0)) FROM jsonb_each_text(({new})::jsonb)), '{{}}'))::text")

    def update_rows(self, cur: Any, table: str, columns: Sequence[tuple[str, str]],
                    rows: Sequence[Sequence[Any]], *, where: str = "true") -> None:
        names = [name.rstrip("?") for name, _ in columns]
        sets = ", ".join(f"{n} = COALESCE(v.{n}, t.{n})" if name.endswith("?") else f"{n} = v.{n}"
                         for n, (name, _) in zip(names, columns, strict=True))
        head = f"UPDATE {table} AS t SET {sets} FROM ("
        tail = f") AS v (id, {', '.join(names)}) WHERE t.id = v.id AND {where}"
        if jsonrows.execute(cur, head, ["bigint", *(kind for _, kind in columns)], rows, tail):
            return
        template = "(" + ", ".join(["%s::bigint", *(f"%s::{kind}" for _, kind in columns)]) + ")"
        self.execute_values(cur, head + "VALUES %s" + tail, rows, template=template)

    def upsert_urls(self, cur: Any, urls: Sequence[str], now: datetime) -> dict[str, int]:
        distinct = sorted(set(urls))
        cur.execute("INSERT INTO urls (url, created_at) SELECT u, %s FROM unnest(%s::text[]) AS u ORDER BY u "
                    "ON CONFLICT (url) DO NOTHING", (now, distinct))
        cur.execute("SELECT url, id FROM urls WHERE url = ANY(%s)", (distinct,))
        return dict(cur.fetchall())

    def copy_jobs(self, cur: Any, batch_id: int | None, jobs: Sequence[tuple[str, str, int | None]],
                  now: datetime) -> list[int]:
        """``(url, options JSON)`` rows into jobs by COPY, in ``cur``'s transaction; their ids.

        Values never reach the SQL text: the ids come from the sequence, the rows travel
        as COPY data escaped for COPY's text format.
        """
        cur.execute("SELECT nextval(pg_get_serial_sequence('jobs', 'id')) FROM generate_series(1, %s)", (len(jobs),))
        ids = [row[0] for row in cur.fetchall()]
        submitted = now.isoformat()
        batch_text = "\\N" if batch_id is None else str(batch_id)
        buf = io.StringIO()
        write = buf.write
        for job_id, (url, opts, url_id) in zip(ids, jobs, strict=True):
            url_text = "\\N" if url_id is None else str(url_id)
            write(f"{job_id}\t{batch_text}\t{_copy_text(url)}\t{_copy_text(opts)}\tqueued\t{submitted}\t{url_text}\n")
        buf.seek(0)
        cur.copy_expert("COPY jobs (id, batch_id, url, options, state, submitted_at, url_id) FROM STDIN", buf,
                        size=1 << 20)
        return ids

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)

    def listen(self) -> PostgresListener:
        return PostgresListener(self)


class PostgresListener:
    """LISTEN on the store's channel; ``wait`` returns True when something changed."""

    def __init__(self, dialect: Postgres) -> None:
        self._dialect = dialect
        self._conn: Any = None
        # Listen from now on, not from the first wait: a caller looks (are my jobs done?)
        # and then waits, and a change committed in between would otherwise go unheard
        # until the caller's polling fallback (``submit --wait`` took 0.5 s, half the time).
        try:
            self._ensure()
        except (StoreUnavailable, self._dialect._pg.OperationalError, self._dialect._pg.InterfaceError):
            self.close()  # wait() tries again, and says so if the database is still away

    def _ensure(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._dialect.connect(autocommit=True)
            with self._conn.cursor() as cur:
                cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return self._conn

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if a change was announced.

        Raises StoreUnavailable when the database is gone (the caller backs off).
        """
        try:
            conn = self._ensure()
            if conn.notifies:
                conn.notifies.clear()
                return True
            ready, _, _ = select.select([conn], [], [], timeout)
            if not ready:
                return False
            conn.poll()
            changed = bool(conn.notifies)
            conn.notifies.clear()
            return changed
        except (self._dialect._pg.OperationalError, self._dialect._pg.InterfaceError, OSError) as exc:
            self.close()
            raise StoreUnavailable(_first_line(exc, self._dialect.url)) from exc

    def close(self) -> None:
        if self._conn is not None:
            _close_quietly(self._conn)
            self._conn = None


# ---------------------------------------------------------------------------- SQLite


class _SqliteCursor:
    """A sqlite3 cursor that accepts the store's ``%s`` placeholders."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _SqliteCursor:
        self._cur.execute(sql.replace("%s", "?"), params)
        return self

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cur.executemany(sql.replace("%s", "?"), rows)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid


BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's write lock on the file


class Sqlite(Dialect):
    """One connection shared under a lock: the embedded default has one process that writes.

    Other processes (a cron import, the TUI, a second `runner submit`) may use the file at
    once. In WAL mode reads never wait for a writer, so reads begin a plain (deferred)
    transaction; writes begin IMMEDIATE, taking the file's one write lock up front, and
    wait up to ``busy_timeout`` seconds for another process to release it. Still locked
    then: StoreUnavailable, one line saying so (exit 3), never sqlite3's traceback.
    """

    name = "sqlite"
    migrations = migrations.SQLITE

    def __init__(self, url: str, path: str, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.url = url
        self.path = path
        self.busy_timeout = busy_timeout
        # A missing folder is a typo far more often than a wish: never created here (the
        # default data dir is made by its settings), so a wrong path is one line, not a
        # new empty database that answers "no jobs".
        if path != ":memory:" and not Path(path).parent.is_dir():
            raise StoreConfigError(f"SQLite database {path}: folder {Path(path).parent} does not exist")
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise StoreConfigError(f"cannot open SQLite database {path}: {exc}") from exc
        try:
            self._conn.execute("PRAGMA foreign_keys = ON")
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as exc:
            self._conn.close()
            busy = self._busy(exc)
            if busy is exc:  # not a lock: a file that cannot be opened or created
                raise StoreConfigError(f"cannot open SQLite database {path}: {exc}") from exc
            raise busy from exc
        self._lock = threading.RLock()
        # Writers in this process wake listeners at once; other processes are seen by polling.
        self.changed = threading.Condition()
        self.generation = 0

    @contextmanager
    def transaction(self, *, write: bool = True, announce: bool = False) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _SqliteCursor(cur)
                except BaseException:
                    self._conn.rollback()
                    raise
                else:
                    self._conn.commit()
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise self._busy(exc) from exc
            finally:
                cur.close()
        if announce:  # committed: wake this process's listeners (others see data_version move)
            self.notify()

    def _busy(self, exc: sqlite3.OperationalError) -> Exception:
        """StoreUnavailable for a lock another process held too long; others as they are."""
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreUnavailable(f"SQLite database {self.path} is locked by another process "
                                    f"(waited {self.busy_timeout:g} s)")
        return exc

    def notify(self) -> None:
        with self.changed:
            self.generation += 1
            self.changed.notify_all()

    def data_version(self) -> int:
        with self._lock:
            version: int = self._conn.execute("PRAGMA data_version").fetchone()[0]
            return version

    def ts(self, value: datetime | None) -> Any:
        return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")

    @overload
    def parse_ts(self, value: datetime | str) -> datetime: ...
    @overload
    def parse_ts(self, value: None) -> None: ...
    def parse_ts(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    def json(self, value: Any) -> Any:
        return json.dumps(value, separators=(",", ":"))

    def parse_json(self, value: Any) -> Any:
        return None if value is None else json.loads(value)

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if not values:
            return "1 = 0", []
        return f"{column} IN ({','.join('%s' for _ in values)})", list(values)

    def boolean(self, value: bool) -> Any:
        return int(value)

    def has_table(self, cur: Any, name: str) -> bool:
        cur.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = %s", (name,))
        return bool(cur.fetchone()[0])

    def insert_jobs(self, cur: Any, batch_id: int | None, jobs: Sequence[tuple[str, str, int | None]],
                    now: datetime) -> list[int]:
        ids = []
        now_v = self.ts(now)
        for url, options, url_id in jobs:
            cur.execute("INSERT INTO jobs (batch_id, url, options, state, submitted_at, url_id) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", (batch_id, url, options, "queued", now_v, url_id))
            ids.append(cur.lastrowid)
        return ids

    def json_text(self, column: str, *path: str) -> str:
        return f"json_extract({column}, '$.{'.'.join(path)}')"

    def json_pairs(self, column: str) -> str:
        return f"json_each({column})"

    def counts_add(self, old: str, new: str) -> str:
        return (f"(SELECT json_group_object(key, total) FROM (SELECT key, sum(value) AS total FROM "
                f"(SELECT key, value FROM json_each({old}) UNION ALL SELECT key, value FROM json_each({new})) "
                "GROUP BY key))")

    def update_rows(self, cur: Any, table: str, columns: Sequence[tuple[str, str]],
                    rows: Sequence[Sequence[Any]]) -> None:
        sets = ", ".join(f"{name[:-1]} = COALESCE(%s, {name[:-1]})" if name.endswith("?") else f"{name} = %s"
                         for name, _ in columns)
        cur.executemany(f"UPDATE {table} SET {sets} WHERE id = %s", [(*row[1:], row[0]) for row in rows])

    def upsert_urls(self, cur: Any, urls: Sequence[str], now: datetime) -> dict[str, int]:
        distinct = sorted(set(urls))
        now_v = self.ts(now)
        cur.executemany("INSERT INTO urls (url, created_at) VALUES (%s, %s) ON CONFLICT (url) DO NOTHING",
                        [(u, now_v) for u in distinct])
        found: dict[str, int] = {}
        for start in range(0, len(distinct), 500):  # SQLite's parameters per statement are bounded
            part = distinct[start:start + 500]
            cur.execute(f"SELECT url, id FROM urls WHERE url IN ({','.join('%s' for _ in part)})", part)
            found.update(cur.fetchall())
        return found

    def insert_returning(self, cur: Any, head: str, rows: Sequence[Sequence[Any]], tail: str,
                         types: Sequence[str] = ()) -> list[Any]:
        found = []
        for row in rows:
            returned = cur.execute(head + f"({','.join('%s' for _ in row)})" + tail, row).fetchone()
            if returned:
                found.append(returned)
        return found

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def listen(self) -> SqliteListener:
        return SqliteListener(self)


class SqliteListener:
    """Wakes on writes in this process at once, and sees other processes' commits by polling."""

    def __init__(self, dialect: Sqlite) -> None:
        self._dialect = dialect
        self._generation = dialect.generation
        self._version = dialect.data_version()

    def wait(self, timeout: float) -> bool:
        d = self._dialect
        with d.changed:
            d.changed.wait_for(lambda: d.generation != self._generation, timeout=timeout)
            changed = d.generation != self._generation
            self._generation = d.generation
        version = d.data_version()
        if version != self._version:
            self._version = version
            changed = True
        return changed

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------- helpers


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


# What PostgreSQL says at connect when the URL's user, password or database is wrong (as
# opposed to a server that is down, starting up or shutting down, which is worth a retry).
_REFUSED_SETTINGS = ("password authentication failed", "no password supplied", "does not exist",
                     "no pg_hba.conf entry", "is not permitted to log in")


def _first_line(exc: BaseException, url: str) -> str:
    """The first line of a driver error, with nothing of the URL's password in it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    password = _password(url)
    if password:
        # libpq quotes pieces of a URL it cannot parse ("wo/rd@host/db", "pa"): a quoted
        # value that shares a piece with the password is dropped, then the password itself.
        pieces = [p for p in re.split(r"[#?/@:&=]", password) if p]

        def elide(match: re.Match[str]) -> str:
            value = match.group(1)
            return '"…"' if any(p in value or (value and value in p) for p in pieces) else match.group()

        text = re.sub(r'"([^"]*)"', elide, text).replace(password, "***")
    return text


def _password(url: str) -> str | None:
    """The URL's password as libpq would see it: from the first ``:`` of the userinfo to
    the last ``@`` (urlsplit ends it at a ``#``, ``?`` or ``/``, libpq does not).

    db imports nothing of ours; runner.text.password_span is the full rule for display.
    """
    scheme = url.find("://")
    at = url.rfind("@")
    if scheme < 0 or at < scheme:
        return None
    userinfo = url[scheme + 3:at]
    colon = userinfo.find(":")
    if colon < 0 or "/" in userinfo[:colon]:
        return None
    return userinfo[colon + 1:] or None


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail in any way
        pass
