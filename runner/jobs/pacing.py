"""Fleet-wide per-host limits: how fast, and how many at once, the fleet checks one host.

The unit is the URL's host name. Each host gets the default limits
(``URLTESTER_HOST_RATE`` checks/s, ``URLTESTER_HOST_CONNECTIONS`` at once; unset means
unlimited) unless an override (``runner limits set``) matches it: the exact name, or
``*.example.com`` for example.com and every name under it; the longest pattern wins.
An override's unset field inherits the default; 0 lifts it for that host.

Design (docs/architecture.md has the long version): the limits are kept by the whole
fleet together through PostgreSQL, the one thing every worker already shares.

* Rate: GCRA slots in ``host_pace`` (:mod:`db.limits`). A check takes the next slot of
  its host (checks of one host asking together take theirs in one statement:
  :class:`Reservations`); a slot in the future is a reservation: the call :class:`Defer`\\ s itself
  until then, carrying the slot in its kwargs, so it holds no thread and no prefetch
  slot meanwhile (waits travel through RabbitMQ's delay queues, from 1/8 s up; only
  shorter ones wait in the process). Back on time, it starts without taking another slot.
  A publisher that knows a host's rate takes its URLs' slots as it publishes them
  (:meth:`Pacer.ahead`) and sends them straight to the delay queues: a limited host's
  backlog never stands in the work queue ahead of other hosts' checks.
* Connections: a lease row per check in flight, renewed by the heartbeat, expiring
  ``LEASE_TTL`` (15 s) after a worker dies.
* Retry-After: a 429 or 503 with ``Retry-After`` pauses its host in ``host_pace`` for
  that long: limited hosts see it at their next admission, unlimited ones within
  ``REFRESH`` seconds (their checks never touch the database otherwise).

A host with no limit costs nothing per check: no query, no lock. Other hosts are never
held up by a limited one: its calls wait outside the worker threads.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from db import Admission, HostLimit, LimitStore, StoreUnavailable
from runner.errors import InvalidInput
from runner.jobs.gather import Gather
from runner.taskq.app import Defer

log = logging.getLogger("urltester.pacing")

REFRESH = 2.0  # seconds between re-reads of the overrides and the pauses
LOCAL_WAIT = 1.0  # a reservation this close is checked with the database; further, it defers at once
DB_AWAY_DELAY = 5.0  # the database cannot pace this host now: try the call again this much later
# Slots are spaced for 95% of the rate: a check starts a few ms after its slot (a thread
# wakes, a connection opens), and without the margin two late-then-on-time starts could
# put rate + 1 requests into one second at the target. Behind the slots, the store's hard
# cap (db.limits.cap_of: the host's own rate in any 1.05 s, grants 0.8/rate apart)
# holds when lateness bunches them; on-time slots never meet it.
RATE_MARGIN = 0.95
EARLY = 0.005  # a slot this close is admitted now (LimitStore.admit's ``early``)


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def host_pattern(text: str) -> str:
    """A host name or ``*.domain``, lowercased; InvalidInput naming what is wrong."""
    value = text.strip().lower().rstrip(".")
    name = value[2:] if value.startswith("*.") else value
    try:
        ipaddress.ip_address(name.strip("[]"))
        if value.startswith("*."):
            raise InvalidInput(f"host pattern {text!r}: *. goes before a domain name, not an address")
        return name.strip("[]")
    except ValueError:
        pass
    labels = name.split(".")
    if not name or len(name) > 253 or not all(
            label and len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label) for label in labels):
        raise InvalidInput(f"host pattern {text!r} is not a host name or *.domain (letters, digits, - and .)")
    return value


def matches(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        return host == pattern[2:] or host.endswith(pattern[1:])
    return host == pattern


@dataclass(frozen=True)
class Limits:
    """What applies to one host: None means unlimited."""

    rate: float | None = None
    connections: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.rate or self.connections)


def resolve(host: str, defaults: Limits, overrides: list[HostLimit]) -> Limits:
    best = max((o for o in overrides if matches(o.pattern, host)), key=lambda o: len(o.pattern), default=None)
    if best is None:
        return defaults
    rate = defaults.rate if best.rate is None else (best.rate or None)
    connections = defaults.connections if best.connections is None else (best.connections or None)
    return Limits(rate, connections)


class Ticket:
    """Leave to check a host; :meth:`release` once the check is over (frees its lease)."""

    def __init__(self, pacer: Pacer | None = None, lease: str | None = None) -> None:
        self._pacer = pacer
        self._lease = lease

    def release(self) -> None:
        if self._pacer is not None and self._lease is not None:
            self._pacer._release(self._lease)
            self._lease = None


FREE = Ticket()


class Reservations:
    """Rate slots for checks of one host that ask together, taken in one statement.

    A batch of 2,000 URLs on a limited host reaches the workers at once, and each check
    asked the database for its slot: 2,000 round trips (40 ms each through a WAN) on the
    host's one row, holding worker threads while other hosts' checks waited behind them
    (bench-fleet: an unlimited host's batch took 1.3 times as long beside it). Checks of a
    host asking together now get consecutive slots from one ``LimitStore.reserve``
    (:class:`~runner.jobs.gather.Gather`, one per host); a check asking alone is admitted
    as before (``alone``, one round trip). Each slot is admitted when it comes due.
    """

    def __init__(self, store: LimitStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._hosts: dict[tuple[str, float], Gather[tuple[int, Callable[[], Admission]], Any]] = {}
        self._asks = itertools.count()  # every check its own key: each gets a slot of its own

    def take(self, host: str, rate: float, alone: Callable[[], Admission]) -> Admission | tuple[float, float]:
        """``alone()``'s admission when this check asked alone, else (a reserved slot, the
        database's now)."""
        with self._lock:
            gather = self._hosts.get((host, rate))
            if gather is None:
                gather = self._hosts[(host, rate)] = Gather(lambda asked: self._answer(host, rate, asked))
        answer: Admission | tuple[float, float] = gather.ask((next(self._asks), alone))
        return answer

    def _answer(self, host: str, rate: float,
                asked: list[tuple[int, Callable[[], Admission]]]) -> list[Admission | tuple[float, float]]:
        if len(asked) == 1:
            return [asked[0][1]()]
        first, now = self.store.reserve(host, rate, len(asked))
        return [(first + i / rate, now) for i in range(len(asked))]


class Pacer:
    """One worker process's side of the fleet's host limits (thread-safe)."""

    def __init__(self, store: LimitStore, worker: str, defaults: Limits, *,
                 clock: Any = time.monotonic) -> None:
        self.store = store
        self.worker = worker
        self.defaults = defaults
        self._clock = clock
        self._lock = threading.Lock()
        self._overrides: list[HostLimit] = []
        self._paused: dict[str, float] = {}  # host -> local monotonic time the pause ends
        self._read_at: float | None = None
        self._reading = threading.Lock()
        self._offset = 0.0  # database clock minus this host's time.time()
        self._reservations = Reservations(store)

    def limits_for(self, host: str) -> Limits:
        self._refresh()
        return resolve(host, self.defaults, self._overrides)

    def admit(self, url: str, pace: dict[str, Any] | None = None) -> Ticket:
        """A ticket to check ``url`` now, or :class:`Defer` with the time to come back."""
        host = host_of(url)
        limits = self.limits_for(host)
        if not limits.any:
            left = self._paused.get(host, 0.0) - self._clock()
            if left > 0:
                raise Defer(left + random.uniform(0, 0.2))  # noqa: S311 - jitter
            return FREE
        slot = (pace or {}).get("slot")
        slot = float(slot) if isinstance(slot, int | float) else None
        if slot is not None and slot - (time.time() + self._offset) > LOCAL_WAIT:
            raise Defer(slot - (time.time() + self._offset), {"pace": {"slot": slot}})
        rate = limits.rate * RATE_MARGIN if limits.rate else None
        try:
            def ask(at: float | None) -> Admission:
                return self.store.admit(host, rate=rate, connections=limits.connections, worker=self.worker, slot=at,
                                        limit=limits.rate)

            got = self._reservations.take(host, rate, lambda: ask(None)) if slot is None and rate else ask(slot)
            if isinstance(got, Admission):
                answer = got
            else:
                slot, now = got
                self._offset = now - time.time()
                if slot - now > EARLY:
                    raise Defer(slot - now, {"pace": {"slot": slot}})
                answer = ask(slot)
        except StoreUnavailable as exc:
            log.warning("host limits of %s not readable (%s); trying again in %.0f s", host, exc, DB_AWAY_DELAY)
            raise Defer(DB_AWAY_DELAY, {"pace": None}) from None
        self._offset = answer.now - time.time()
        if answer.granted:
            return Ticket(self, answer.lease) if answer.lease else FREE
        raise Defer(answer.wait, {"pace": {"slot": answer.slot} if answer.slot is not None else None})

    def again(self, url: str, within: float) -> bool:
        """A check's own retry of ``url`` (one more request to its host) takes a grant of
        the host's rate as a check does, in this thread (retries are rare, and the check is
        under way): True once granted, False if that is not within ``within`` seconds or
        the database cannot say. Without it, a retry after a 429's pause went beside the 20
        grants of the next second (the cap's slack used to hide it). Connections: the
        check keeps the lease it holds."""
        host = host_of(url)
        try:
            limits = self.limits_for(host)
        except Defer:
            return False  # the limits not readable yet
        if not limits.rate:
            return True
        rate, slot = limits.rate * RATE_MARGIN, None
        end = time.monotonic() + within
        for _ in range(50):  # bounded: a slot, the gap, the cap's window, and a few more
            try:
                answer = self.store.admit(host, rate=rate, connections=None, worker=self.worker, slot=slot,
                                          limit=limits.rate)
            except StoreUnavailable:
                return False
            if answer.granted:
                return True
            if time.monotonic() + answer.wait > end:
                return False
            slot = answer.slot
            time.sleep(answer.wait)
        return False

    def ahead(self, urls: Sequence[str]) -> list[tuple[float, float] | None]:
        """For a batch being published: each URL of a rate-limited host gets its slot now,
        ``(slot, seconds until it)``, the slots of one host taken in one statement; None for
        the others. The publisher holds such a call back in the broker until about its slot,
        so that a limited host's backlog never stands in the work queue ahead of other
        hosts' checks (10,000 URLs of a host at 5/s ahead of 2,000 of 50 others took the
        workers' first pass over every one of them, 1.75x of the others' time alone).
        A database that cannot answer: None for the rest (the workers pace them)."""
        out: list[tuple[float, float] | None] = [None] * len(urls)
        try:
            self._refresh()
        except Defer:
            return out
        if not self.defaults.rate and not any(o.rate for o in self._overrides):
            return out  # no host has a rate limit: nothing to look at per URL (a million-line import)
        by_host: dict[str, list[int]] = {}
        for i, url in enumerate(urls):
            by_host.setdefault(host_of(url), []).append(i)
        try:
            for host, where in by_host.items():
                limits = self.limits_for(host)
                if not limits.rate:
                    continue
                rate = limits.rate * RATE_MARGIN
                first, now = self.store.reserve(host, rate, len(where))
                for k, i in enumerate(where):
                    slot = first + k / rate
                    out[i] = (slot, slot - now)
        except (StoreUnavailable, Defer) as exc:
            log.warning("host limits not readable while publishing (%s); the workers pace these checks", exc)
        return out

    def pause(self, host: str, seconds: float) -> None:
        """The host asked for a pause (Retry-After): the whole fleet keeps it."""
        host = host.lower().rstrip(".")
        with self._lock:
            self._paused[host] = max(self._paused.get(host, 0.0), self._clock() + seconds)
        try:
            self.store.pause(host, seconds)
        except StoreUnavailable as exc:
            log.warning("pause of %s for %.0f s kept by this worker only: %s", host, seconds, exc)
        log.info("%s asked for a pause of %.0f s (Retry-After): paused fleet-wide", host, seconds)

    def renew(self) -> None:
        """From the heartbeat: this worker's checks in flight keep their leases."""
        self.store.renew(self.worker)

    def close(self) -> None:
        try:
            self.store.drop_leases(self.worker)
        except StoreUnavailable:
            pass  # they expire on their own

    def _release(self, lease: str) -> None:
        try:
            self.store.release(lease)
        except StoreUnavailable:
            pass  # it expires on its own within LEASE_TTL

    def _refresh(self) -> None:
        """Re-read overrides and pauses every REFRESH seconds: one thread reads while the
        others go on with the last answer; before the first answer, everyone waits for it
        (a worker must not start with "no limits" while they are being read)."""
        now = self._clock()
        if self._read_at is not None and now - self._read_at < REFRESH:
            return
        if not self._reading.acquire(blocking=self._read_at is None):
            return
        try:
            if self._read_at is not None and now - self._read_at < REFRESH:
                return
            try:
                overrides = self.store.limits()
                pauses = self.store.pauses()
            except StoreUnavailable as exc:
                log.warning("host limits not re-read: %s", exc)
                if self._read_at is None:
                    raise Defer(DB_AWAY_DELAY) from None
                return
            with self._lock:
                self._overrides = overrides
                self._paused = {h: t for h, t in self._paused.items() if t > now}
                for host, left in pauses.items():
                    self._paused[host] = max(self._paused.get(host, 0.0), now + left)
            self._read_at = now
        finally:
            self._reading.release()
