"""Per-host limits and the fleet's shared pacing state: the SQL of ``runner.jobs.pacing``.

Three tables (migration 3):

* ``host_limits``: overrides set by ``runner limits set`` (a host or ``*.domain``);
* ``host_pace``: per host, the next free rate slot and a Retry-After pause. A rate limit
  is GCRA (the "generic cell rate algorithm"): taking a slot moves ``next_slot`` on by
  ``1/rate``, so slots are spaced exactly, whichever worker takes them. A slot may be
  taken ahead (a reservation): the caller waits until its time, elsewhere;
* ``host_grants``: when each check of a rate-limited host was let go, for the last
  window: at most ``rate`` in any second, however late some start after their slot;
* ``host_leases``: checks in flight on a host with a connection limit. A lease expires
  ``LEASE_TTL`` seconds after its last renewal (each worker renews its own with its
  heartbeat), so a worker killed mid-check blocks a connection for at most that long.

Times are epoch seconds of the database's clock (PostgreSQL's ``clock_timestamp()``),
never the workers': hosts in a fleet disagree about the time, the database is one clock.
A host's row is locked (``FOR UPDATE``) while its admission is decided (inside one
function call on PostgreSQL), so workers take its slots one after another; other hosts'
rows are not touched.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .dialects import Dialect
from .errors import StoreUnavailable
from .postgres import Postgres

# The hard cap behind GCRA's spacing, counted at the moment a check is let go (a grant):
# at most the host's own limit in any window of max(1 s, 1/limit) stretched by CAP_SLACK,
# and consecutive grants at least GAP_SHARE of 1/limit apart. A request reaches its host
# some time after its grant (the answer's trip to the worker, a thread's turn), and that
# time varies: CAP_SLACK is how much more it may vary between two grants 20 apart (for a
# 20/s limit) before the target counts 21 in one second; the gap keeps late callers that
# come back together from going as one burst (whose requests then spread the most). The
# slots are spaced for 95% of the limit (runner.jobs.pacing.RATE_MARGIN), so on-time
# grants never meet the cap: it costs pace only when it catches a burst.
# Before (issue 15 to 25): the slots' rate (95%) grants per 1.25 s, 15.2/s for a 20/s limit.
CAP_SLACK = 0.05
GAP_SHARE = 0.8
LEASE_TTL = 15.0  # seconds a lease outlives its last renewal (a killed worker's checks)


def cap_of(limit: float) -> tuple[int, float, float]:
    """For a host limited to ``limit`` checks/s: (grants allowed in the window, the window
    in seconds, the least time between two grants)."""
    span = max(1.0, 1.0 / limit)
    return max(1, int(limit * span + 1e-9)), span * (1.0 + CAP_SLACK), GAP_SHARE / limit


@dataclass(frozen=True)
class HostLimit:
    """An override: ``rate`` checks/s and ``connections`` at once; None inherits the
    default, 0 means unlimited for this host."""

    pattern: str
    rate: float | None
    connections: int | None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Admission:
    """The database's answer to "may this check of HOST start now?".

    ``granted``: go (``lease`` to release when done, if the host has a connection limit).
    Otherwise wait ``wait`` seconds; ``slot`` is the rate slot reserved for the caller
    then (None: nothing reserved, ask again). ``now`` is the database's clock.
    """

    granted: bool
    wait: float = 0.0
    slot: float | None = None
    lease: str | None = None
    now: float = 0.0


class LimitStore:
    """Host limits and pacing in the store's database (both dialects).

    On PostgreSQL the calls made for every check of a limited host (admit, release) are
    one statement each on connections of their own in autocommit: through a 20 ms WAN a
    transaction of ten statements held the host's row lock for ten round trips, and the
    whole fleet got two admissions a second for that host. Admission is the function
    ``urltester_admit`` (migration 3); SQLite runs the same decision in Python below.
    """

    POOL = 8  # autocommit connections for admissions, per process

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._pg = isinstance(dialect, Postgres)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.POOL)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail in any way
                pass

    def _autocommit(self, sql: str, params: tuple[Any, ...]) -> Any:
        """One statement in autocommit on a pooled connection; its first row (or None)."""
        pg = self.dialect._pg  # type: ignore[attr-defined]  # PostgreSQL only: SQLite takes no limits path here
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None or conn.closed:
                conn = self.dialect.connect(autocommit=True)  # type: ignore[attr-defined]  # PostgreSQL only, as above
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    row = cur.fetchone() if cur.description else None
            except (pg.OperationalError, pg.InterfaceError) as exc:
                conn.close()
                raise StoreUnavailable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc
            except BaseException:
                conn.close()
                raise
            with self._lock:
                self._idle.append(conn)
            return row

    def _now(self, cur: Any) -> float:
        if self._pg:
            cur.execute("SELECT extract(epoch from clock_timestamp())")
            return float(cur.fetchone()[0])
        return time.time()  # SQLite: one process, one clock

    # ------------------------------------------------------------------ overrides

    def set_limit(self, limit: HostLimit) -> None:
        d = self.dialect
        with d.transaction() as cur:
            cur.execute(
                "INSERT INTO host_limits (pattern, rate, connections, updated_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (pattern) DO UPDATE SET rate = excluded.rate, connections = excluded.connections, "
                "updated_at = excluded.updated_at",
                (limit.pattern, limit.rate, limit.connections, d.ts(datetime.now(UTC))),
            )

    def clear_limit(self, pattern: str) -> bool:
        with self.dialect.transaction() as cur:
            cur.execute("DELETE FROM host_limits WHERE pattern = %s", (pattern,))
            return bool(cur.rowcount > 0)

    def limits(self) -> list[HostLimit]:
        d = self.dialect
        with d.transaction() as cur:
            cur.execute("SELECT pattern, rate, connections, updated_at FROM host_limits ORDER BY pattern")
            rows = cur.fetchall()
        return [HostLimit(r[0], None if r[1] is None else float(r[1]), r[2], d.parse_ts(r[3])) for r in rows]

    def pauses(self) -> dict[str, float]:
        """Hosts paused now (by a Retry-After), with the seconds left."""
        with self.dialect.transaction() as cur:
            now = self._now(cur)
            cur.execute("SELECT host, paused_until FROM host_pace WHERE paused_until > %s", (now,))
            return {host: float(until) - now for host, until in cur.fetchall()}

    # ------------------------------------------------------------------ pacing

    def admit(self, host: str, *, rate: float | None, connections: int | None, worker: str,
              slot: float | None = None, early: float = 0.005, limit: float | None = None) -> Admission:
        """Take a rate slot (or use the one reserved, ``slot``) and a connection lease.

        ``rate`` spaces the slots; ``limit`` (the host's own rate, default ``rate``) sets
        the hard cap (:func:`cap_of`) on grants, counted when they are let go.

        A reservation made before a pause began, inside it, is dropped: the caller gets a
        new one after the pause. A caller turned away for lack of a connection gets a new
        rate slot to come back at (so retries stay paced), or nothing without a rate.
        """
        cap, window, gap = cap_of(limit or rate) if rate else (0, 0.0, 0.0)
        if self._pg:
            granted, wait, reserved, lease, now = self._autocommit(
                "SELECT * FROM urltester_admit(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (host, rate or 0.0, connections or 0, worker, slot, early, uuid.uuid4().hex, LEASE_TTL,
                 cap, window, gap))
            return Admission(bool(granted), float(wait), None if reserved is None else float(reserved), lease,
                             float(now))
        with self.dialect.transaction() as cur:  # SQLite: one process, BEGIN IMMEDIATE serialises
            now = self._now(cur)
            cur.execute("INSERT INTO host_pace (host) VALUES (%s) ON CONFLICT (host) DO NOTHING", (host,))
            cur.execute("SELECT next_slot, paused_until FROM host_pace WHERE host = %s", (host,))
            next_slot, paused_until = (float(v) for v in cur.fetchone())
            if slot is not None and (slot < paused_until or slot < now - 2.0 or slot > now + 3600):
                slot = None  # made before a pause, long past (a redelivery), or nonsense: a new one
            if slot is not None and slot - now > early:
                return Admission(False, slot - now, slot, now=now)  # early: keep the reservation
            if slot is None and rate:
                slot = max(next_slot, now, paused_until)
                next_slot = slot + 1.0 / rate
                cur.execute("UPDATE host_pace SET next_slot = %s WHERE host = %s", (next_slot, host))
                if slot - now > early:
                    return Admission(False, slot - now, slot, now=now)
            elif slot is None and paused_until > now:
                return Admission(False, paused_until - now, now=now)
            if rate:
                # The hard cap (cap_of): GCRA spaces the slots, but checks start a little after
                # theirs (a late one next to an on-time one), counted when they are let go.
                cur.execute("DELETE FROM host_grants WHERE host = %s AND at <= %s", (host, now - window))
                cur.execute("SELECT max(at) FROM host_grants WHERE host = %s", (host,))
                last = cur.fetchone()[0]
                if last is not None and float(last) + gap - now > early:
                    return Admission(False, float(last) + gap - now, slot, now=now)
                cur.execute("SELECT at FROM host_grants WHERE host = %s ORDER BY at DESC LIMIT 1 OFFSET %s",
                            (host, cap - 1))
                row = cur.fetchone()
                if row is not None:
                    return Admission(False, float(row[0]) + window - now + 0.001, slot, now=now)
            if not connections:
                if rate:
                    cur.execute("INSERT INTO host_grants (host, at) VALUES (%s, %s)", (host, now))
                return Admission(True, now=now)
            cur.execute("DELETE FROM host_leases WHERE host = %s AND expires_at < %s", (host, now))
            cur.execute("SELECT count(*) FROM host_leases WHERE host = %s", (host,))
            if int(cur.fetchone()[0]) >= connections:
                if rate:
                    again = max(next_slot, now, paused_until)
                    cur.execute("UPDATE host_pace SET next_slot = %s WHERE host = %s", (again + 1.0 / rate, host))
                    return Admission(False, max(again - now, 0.02), again, now=now)
                return Admission(False, 0.1, now=now)
            if rate:
                cur.execute("INSERT INTO host_grants (host, at) VALUES (%s, %s)", (host, now))
            lease = uuid.uuid4().hex
            cur.execute("INSERT INTO host_leases (id, host, worker, expires_at) VALUES (%s, %s, %s, %s)",
                        (lease, host, worker, now + LEASE_TTL))
            return Admission(True, lease=lease, now=now)

    def reserve(self, host: str, rate: float, count: int) -> tuple[float, float]:
        """Take ``count`` consecutive rate slots of ``host`` at once: the first free one
        (not before now, nor inside a pause) and the next ``count - 1``, ``1/rate`` apart.
        Returns (the first slot, the database's now). For many checks of one host asking
        together: one statement for all of them, not one each (see ``runner.jobs.pacing``).
        The slots are reservations: each is admitted (cap, connections) when it comes due.
        """
        span = count / rate
        if self._pg:
            take = ("UPDATE host_pace SET next_slot = greatest(next_slot, extract(epoch from clock_timestamp()), "
                    "paused_until) + %s WHERE host = %s "
                    "RETURNING next_slot - %s, extract(epoch from clock_timestamp())")
            row = self._autocommit(take, (span, host, span))
            if row is None:  # the host's first check: its row
                self._autocommit("INSERT INTO host_pace (host) VALUES (%s) ON CONFLICT (host) DO NOTHING", (host,))
                row = self._autocommit(take, (span, host, span))
            return float(row[0]), float(row[1])
        with self.dialect.transaction() as cur:
            now = self._now(cur)
            cur.execute("INSERT INTO host_pace (host) VALUES (%s) ON CONFLICT (host) DO NOTHING", (host,))
            cur.execute("SELECT next_slot, paused_until FROM host_pace WHERE host = %s", (host,))
            next_slot, paused_until = (float(v) for v in cur.fetchone())
            first = max(next_slot, now, paused_until)
            cur.execute("UPDATE host_pace SET next_slot = %s WHERE host = %s", (first + span, host))
            return first, now

    def release(self, lease: str) -> None:
        if self._pg:
            self._autocommit("DELETE FROM host_leases WHERE id = %s", (lease,))
            return
        with self.dialect.transaction() as cur:
            cur.execute("DELETE FROM host_leases WHERE id = %s", (lease,))

    def renew(self, worker: str) -> None:
        """Keep this worker's leases (its checks still running) from expiring."""
        with self.dialect.transaction() as cur:
            now = self._now(cur)
            cur.execute("UPDATE host_leases SET expires_at = %s WHERE worker = %s", (now + LEASE_TTL, worker))

    def drop_leases(self, worker: str) -> None:
        with self.dialect.transaction() as cur:
            cur.execute("DELETE FROM host_leases WHERE worker = %s", (worker,))

    def pause(self, host: str, seconds: float) -> None:
        """A Retry-After from ``host``: no check of it starts, fleet-wide, for ``seconds``."""
        if self._pg:  # at once, not behind the writer's transactions on the shared pool
            self._autocommit(
                "INSERT INTO host_pace AS h (host, paused_until) "
                "VALUES (%s, extract(epoch from clock_timestamp()) + %s) "
                "ON CONFLICT (host) DO UPDATE SET paused_until = greatest(h.paused_until, excluded.paused_until)",
                (host, seconds))
            return
        with self.dialect.transaction() as cur:
            now = self._now(cur)
            cur.execute("INSERT INTO host_pace (host) VALUES (%s) ON CONFLICT (host) DO NOTHING", (host,))
            cur.execute("UPDATE host_pace SET paused_until = %s WHERE host = %s AND paused_until < %s",
                        (now + seconds, host, now + seconds))
