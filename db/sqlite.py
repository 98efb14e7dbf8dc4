"""SQLite, the embedded default: one connection under a lock, WAL, IMMEDIATE writes, and
changes seen by polling the file's data version (:class:`Sqlite`, :class:`SqliteListener`)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from . import migrations
from .dialects import Dialect
from .errors import StoreConfigError, StoreUnavailable


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
