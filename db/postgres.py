"""PostgreSQL, the production database: psycopg2 with a pool of its own, COPY for big
inserts, LISTEN/NOTIFY for changes (:class:`Postgres`, :class:`PostgresListener`)."""

from __future__ import annotations

import io
import re
import select
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from . import jsonrows, migrations
from .dialects import COPY_FROM, Dialect
from .errors import StoreConfigError, StoreUnavailable
from .states import taken_back

NOTIFY_CHANNEL = "urltester"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    # Normalised URLs and JSON text almost never need escaping; translate() is slow.
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


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
        in tens of ms, hence 5 ms. The ticker is connected before the first VACUUM starts,
        so ids are handed out from the first page on.

        What no id can prove: PostgreSQL 14 and 15 ask it of every transaction on the server,
        of every database (16 on: of this database's). A transaction of another database open
        across the VACUUM's end keeps its pages for the next VACUUM, the same one-day step,
        taken once (docs/history.md, *Retention*)."""
        conn = self.connect(autocommit=True)  # VACUUM runs outside a transaction
        done, ready = threading.Event(), threading.Event()
        ticker = threading.Thread(target=self._tick, args=(done, ready), name="vacuum-xids", daemon=True)
        ticker.start()
        ready.wait(10)  # (connected, or given up)
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

    def _tick(self, done: threading.Event, ready: threading.Event) -> None:
        """:meth:`vacuum`'s transaction ids, until ``done``; ``ready`` once connected (best
        effort: a failure only leaves the pages to the next VACUUM)."""
        try:
            conn = self.connect(autocommit=True)
        except StoreUnavailable:
            ready.set()
            return
        try:
            with conn.cursor() as cur:
                cur.execute("SET synchronous_commit TO off")  # ids, not durability: no flush each
                ready.set()
                while not done.wait(0.005):
                    cur.execute("SELECT txid_current()")
        except self._pg.Error:
            pass
        finally:
            ready.set()
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
