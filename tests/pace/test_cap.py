"""The hard cap behind the rate slots (db/limits.py: cap_of), as a property: whatever mix of
new, late and early callers asks, and whenever, the grants of a host limited to R/s never
number more than R in any window of the cap (so never more than R in any second), are
never closer than the least gap, and a caller told to wait gets in when it comes back
alone. SQLite with a clock the test moves (the same decision as PostgreSQL's function);
PostgreSQL's own function under threads on the real clock below it."""

from __future__ import annotations

import bisect
import heapq
import threading
import uuid
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import db.limits
from db import open_store
from db.limits import cap_of
from runner.jobs.pacing import EARLY, RATE_MARGIN

EPS = 1e-6


class Clock:
    """db.limits' ``time`` for SQLite's side: moved by the test only, never backwards."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now


def most_in_any_window(times: list[float], width: float) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + width - EPS) - i for i, t in enumerate(ordered)), default=0)


def assert_capped(grants: list[float], limit: float) -> None:
    cap, window, gap = cap_of(limit)
    assert most_in_any_window(grants, window) <= cap, grants
    assert most_in_any_window(grants, 1.0) <= max(cap, 1), grants
    ordered = sorted(grants)
    assert all(b - a >= gap - EARLY - EPS for a, b in zip(ordered, ordered[1:], strict=False)), ordered


def test_cap_of_counts_the_hosts_own_limit_not_the_slots_margin() -> None:
    assert cap_of(20) == (20, pytest.approx(1.05), pytest.approx(0.04))
    assert cap_of(0.5)[:2] == (1, pytest.approx(2.1))  # one in any 2.1 s
    # The slots (95% of the limit) never meet the cap while on time: 21 of them span more
    # than its window.
    for limit in (1, 5, 20, 100):
        cap, window, _ = cap_of(limit)
        assert cap / (limit * RATE_MARGIN) > window


@pytest.fixture
def clocked(tmp_path, monkeypatch):
    """SQLite's limits on the test's clock (one store for all of a test's examples: each
    example takes a host of its own, later on the clock)."""
    clock = Clock()
    monkeypatch.setattr(db.limits, "time", SimpleNamespace(time=clock.time))
    store = open_store(f"sqlite:///{tmp_path}/cap.db")
    yield store.limits, clock
    store.close()


# Callers: each asks this long after the previous one (s), carrying nothing (a new check)
# or a slot reserved earlier, this many seconds from its first ask (negative: it is late).
# Told to wait, a caller comes back that much later plus a lateness of its own (a delay
# queue, a thread's turn): so callers bunch, as deferred calls do.
callers = st.lists(st.tuples(st.floats(0, 0.2), st.one_of(st.none(), st.floats(-1.5, 0.3))), min_size=1, max_size=80)
lateness = st.lists(st.one_of(st.just(0.0), st.floats(0, 0.3)), min_size=1, max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.sampled_from([2.0, 5.0, 20.0, 50.0]), asks=callers, late=lateness)
def test_no_callers_get_more_than_the_limit_into_any_second(clocked, limit, asks, late) -> None:
    limits, clock = clocked
    clock.now += 1000.0  # a host of its own, after the last example's
    host = f"{uuid.uuid4().hex}.test"
    rate = limit * RATE_MARGIN
    waiting: list[tuple[float, int, float | None]] = []  # (when it asks, who, its slot)
    at = clock.now
    for who, (after, slot_in) in enumerate(asks):
        at += after
        heapq.heappush(waiting, (at, who, None if slot_in is None else at + slot_in))
    grants: list[float] = []
    for step in range(60 * len(asks)):  # bounded: every caller gets in long before
        if not waiting:
            break
        when, who, slot = heapq.heappop(waiting)
        clock.now = max(clock.now, when)
        answer = limits.admit(host, rate=rate, limit=limit, connections=None, worker="w", slot=slot)
        if answer.granted:
            grants.append(answer.now)
        else:
            assert answer.wait > 0, answer
            heapq.heappush(waiting, (clock.now + answer.wait + late[step % len(late)], who, answer.slot))
    assert not waiting and len(grants) == len(asks)  # nobody lost, nobody let in twice
    assert_capped(grants, limit)


@pytest.mark.postgres
def test_postgres_cap_holds_under_threads_asking_at_once(pg_url) -> None:
    """Eight threads, each check taking its slot and coming back for it (most of them
    late, as deferred calls are): PostgreSQL's function grants as SQLite's does."""
    store = open_store(pg_url, max_connections=2)
    limit, wanted = 20.0, 50
    grants: list[float] = []
    lock = threading.Lock()

    def asker() -> None:
        for _ in range(40):  # bounded: 8 x 40 asks for 50 grants
            with lock:
                if len(grants) >= wanted:
                    return
            answer = store.limits.admit("pg.test", rate=limit * RATE_MARGIN, limit=limit, connections=None, worker="w")
            for _ in range(50):
                if answer.granted:
                    with lock:
                        grants.append(answer.now)
                    break
                threading.Event().wait(answer.wait)
                answer = store.limits.admit("pg.test", rate=limit * RATE_MARGIN, limit=limit, connections=None,
                                            worker="w", slot=answer.slot)

    try:
        threads = [threading.Thread(target=asker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        store.close()
    assert len(grants) >= wanted
    assert_capped(grants, limit)
