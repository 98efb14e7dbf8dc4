"""Host limits without services: the GCRA slots, the 1 s cap, pauses and leases in the
store (SQLite here; PostgreSQL in test_limits_fleet.py), pattern matching, and the
`runner limits` commands' answers to bad input."""

from __future__ import annotations

import pytest

from db import HostLimit, open_store
from db.limits import LEASE_TTL
from runner.errors import InvalidInput
from runner.jobs.pacing import Limits, Pacer, host_pattern, matches, resolve
from runner.taskq.app import Defer
from tests.support.services import run_cli, runner_env, wait_until


@pytest.fixture
def store(sqlite_url):
    s = open_store(sqlite_url)
    yield s
    s.close()


def test_slots_are_spaced_by_the_rate_and_reserved_ahead(store) -> None:
    limits = store.limits
    first = limits.admit("a.test", rate=10, connections=None, worker="w")
    assert first.granted
    later = [limits.admit("a.test", rate=10, connections=None, worker="w") for _ in range(3)]
    assert not any(a.granted for a in later)
    slots = [a.slot for a in later]
    assert [round(b - a, 3) for a, b in zip([first.now, *slots], slots, strict=False)][1:] == [0.1, 0.1]
    assert 0.05 < later[0].wait <= 0.1
    # Other hosts are not touched.
    assert limits.admit("b.test", rate=10, connections=None, worker="w").granted


def test_a_pause_drops_reservations_inside_it(store) -> None:
    limits = store.limits
    limits.admit("a.test", rate=100, connections=None, worker="w")
    reserved = limits.admit("a.test", rate=100, connections=None, worker="w")
    limits.pause("a.test", 5)
    again = limits.admit("a.test", rate=100, connections=None, worker="w", slot=reserved.slot)
    assert not again.granted and again.wait > 4.9
    assert 4.9 < store.limits.pauses()["a.test"] <= 5


def test_connection_leases_count_until_released_or_expired(store) -> None:
    limits = store.limits
    one = limits.admit("a.test", rate=None, connections=1, worker="dead")
    assert one.granted and one.lease
    assert not limits.admit("a.test", rate=None, connections=1, worker="w").granted
    with store.dialect.transaction() as cur:  # the dead worker's lease runs out
        cur.execute("UPDATE host_leases SET expires_at = expires_at - %s", (LEASE_TTL + 1,))
    assert limits.admit("a.test", rate=None, connections=1, worker="w").granted


def test_patterns_and_the_most_specific_override() -> None:
    assert host_pattern(" *.Example.COM. ") == "*.example.com"
    assert host_pattern("[::1]") == "::1"
    for bad in ("", "exa mple.com", "*.10.0.0.1", "a/b", "x" * 300):
        with pytest.raises(InvalidInput):
            host_pattern(bad)
    assert matches("*.example.com", "example.com") and matches("*.example.com", "a.b.example.com")
    assert not matches("*.example.com", "badexample.com")
    overrides = [HostLimit("*.example.com", 5, None), HostLimit("api.example.com", 0, 2)]
    defaults = Limits(50, 10)
    assert resolve("www.example.com", defaults, overrides) == Limits(5, 10)
    assert resolve("api.example.com", defaults, overrides) == Limits(None, 2)  # 0 lifts the default
    assert resolve("other.org", defaults, overrides) == defaults


def test_the_pacer_defers_with_its_slot_and_never_queries_for_unlimited_hosts(store) -> None:
    pacer = Pacer(store.limits, "w", Limits(None, None))
    store.limits.set_limit(HostLimit("slow.test", 2, None))
    assert pacer.admit("http://fast.test/x") is not None
    pacer.admit("http://slow.test/1").release()
    with pytest.raises(Defer) as deferred:
        pacer.admit("http://slow.test/2")
    slot = deferred.value.kwargs["pace"]["slot"]
    assert 0.4 < deferred.value.delay <= 0.53
    with pytest.raises(Defer) as again:  # back early with its slot: told to wait the rest
        pacer.admit("http://slow.test/2", {"slot": slot})
    assert again.value.kwargs["pace"]["slot"] == slot


def test_limits_commands(sqlite_url) -> None:
    env = runner_env(sqlite_url, None)
    out = run_cli(["limits", "set", "*.example.com", "--rate", "2.5"], env)
    assert out.returncode == 0 and "*.example.com: rate 2.5 checks/s, connections default" in out.stdout
    listed = run_cli(["limits", "list"], {**env, "URLTESTER_HOST_CONNECTIONS": "4"})
    assert "connections 4 at once" in listed.stdout and "*.example.com  rate 2.5 checks/s" in listed.stdout
    bad = run_cli(["limits", "set", "exa\x1b[31mmple", "--rate", "1"], env)
    assert bad.returncode == 2 and "is not a host name" in bad.stderr and "\x1b" not in bad.stderr
    assert "Traceback" not in bad.stderr
    nothing = run_cli(["limits", "set", "example.com"], env)
    assert nothing.returncode == 2 and "--rate" in nothing.stderr
    assert run_cli(["limits", "clear", "*.example.com"], env).returncode == 0
    gone = run_cli(["limits", "clear", "*.example.com"], env)
    assert gone.returncode == 1 and "no limits are set" in gone.stderr
    env_bad = run_cli(["limits", "list"], {**env, "URLTESTER_HOST_RATE": "fast"})
    assert env_bad.returncode == 2 and "URLTESTER_HOST_RATE='fast' is not a number" in env_bad.stderr


def test_reserve_takes_consecutive_slots_after_the_taken_ones(store) -> None:
    limits = store.limits
    first = limits.admit("a.test", rate=10, connections=None, worker="w")  # takes the slot now
    start, now = limits.reserve("a.test", 10, 5)
    assert abs(start - (first.now + 0.1)) < 0.01 and now >= first.now
    after = limits.admit("a.test", rate=10, connections=None, worker="w")
    assert not after.granted and abs(after.slot - (start + 0.5)) < 1e-6  # the five are taken
    limits.pause("a.test", 30)
    paused, now = limits.reserve("a.test", 10, 1)
    assert paused >= now + 29.9  # never inside a pause


def test_checks_of_one_host_asking_together_take_their_slots_in_few_statements(store) -> None:
    """A limited host's batch arriving at once: slots all distinct and 1/rate apart, and
    far fewer statements than checks (one round trip each held the workers' threads)."""
    import threading
    import time

    store.limits.set_limit(HostLimit("slow.test", 50, None))
    pacer = Pacer(store.limits, "w", Limits(None, None))
    pacer.limits_for("slow.test")  # the overrides read once, before the crowd
    statements: list[str] = []
    reserve, admit = store.limits.reserve, store.limits.admit

    def waiting() -> int:
        return sum(gather.waiting() for gather in pacer._reservations._hosts.values())

    def counted(name, fn):  # the real call, counted, 20 ms away (a WAN)
        def call(*args, **kwargs):
            if not statements:  # the first one returns once every other check has asked (the
                # scheduler's time, which a loaded machine can make longer than the link's 20 ms)
                first = args[2] if name == "reserve" else 1
                wait_until(lambda: first + waiting() >= 100, 30, interval=0.005,
                           message="every other check to ask while the first statement is out")
            statements.append(name)
            time.sleep(0.02)
            return fn(*args, **kwargs)
        return call

    store.limits.reserve = counted("reserve", reserve)  # type: ignore[method-assign]
    store.limits.admit = counted("admit", admit)  # type: ignore[method-assign]
    slots: list[float] = []
    granted: list[int] = []
    go = threading.Barrier(100)

    def check(i: int) -> None:
        go.wait()
        try:
            pacer.admit(f"http://slow.test/{i}").release()
            granted.append(i)
        except Defer as deferred:
            slots.append(deferred.kwargs["pace"]["slot"])

    threads = [threading.Thread(target=check, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(slots) + len(granted) == 100 and 1 <= len(granted) <= 2
    gaps = [round(b - a, 4) for a, b in zip(sorted(slots), sorted(slots)[1:], strict=False)]
    assert set(gaps) == {round(1 / (50 * 0.95), 4)}, gaps  # RATE_MARGIN: 95% of the rate
    assert len(statements) < 25, statements


def test_ahead_gives_a_limited_hosts_urls_their_slots_and_leaves_the_others(store) -> None:
    store.limits.set_limit(HostLimit("a.test", 10, None))
    pacer = Pacer(store.limits, "submitter", Limits())
    urls = ["http://a.test/1", "http://b.test/1", "http://a.test/2", "http://A.test./3"]
    ahead = pacer.ahead(urls)
    assert ahead[1] is None
    slots = [ahead[i][0] for i in (0, 2, 3)]
    assert [round(b - a, 3) for a, b in zip(slots, slots[1:], strict=False)] == [round(1 / 9.5, 3)] * 2
    assert ahead[3][1] > ahead[0][1] >= 0  # seconds until the slot
    # A worker's check of the same host takes the slot after them.
    later = store.limits.admit("a.test", rate=9.5, connections=None, worker="w")
    assert later.slot is not None and later.slot >= slots[-1] + 1 / 9.5 - 1e-6


def test_ahead_without_any_rate_limit_looks_at_nothing(store) -> None:
    pacer = Pacer(store.limits, "submitter", Limits(connections=3))
    assert pacer.ahead(["http://a.test/1", "http://b.test/2"]) == [None, None]


def test_a_publisher_holds_a_limited_hosts_calls_back_with_their_slots() -> None:
    from runner.jobs.intake import Intake
    from runner.taskq.app import App, Call

    class Broker:
        queue = "q"

        def __init__(self) -> None:
            self.sent: list[tuple[str | None, float]] = []

        def attach(self, app) -> None:
            pass

        def publish(self, messages, *, headers=None, routing_key=None, delay=0.0):
            self.sent += [(routing_key, delay)] * len(messages)

    broker = Broker()
    app = App(broker)  # type: ignore[arg-type]
    app.task(name="check")(lambda *a, **k: None)
    intake = Intake(None, app, queue="q", no_worker_after=60,  # type: ignore[arg-type]
                    pace=lambda urls: [(100.0 + i, 5.0 + i) if "a.test" in u else None for i, u in enumerate(urls)])
    calls = {"default": [Call("check", (i, url, {})) for i, url in enumerate(["http://a.test/", "http://b.test/"])]}
    held = intake._held_back(calls)
    assert {key: [c.args[1] for c in cs] for key, cs in held.items()} == {
        ("default", 4.0): ["http://a.test/"], ("default", 0.0): ["http://b.test/"]}
    assert held[("default", 4.0)][0].kwargs == {"pace": {"slot": 100.0}}


def test_a_checks_retry_takes_a_grant_of_its_hosts_rate(store) -> None:
    """A retry is one more request to the host: it waits for the host's rate as a check
    does (in its thread), or is not made when that is not within the time left."""
    store.limits.set_limit(HostLimit("slow.test", 4, None))
    pacer = Pacer(store.limits, "w", Limits(None, None))
    pacer.admit("http://slow.test/a").release()  # the check's first request: granted now
    assert not pacer.again("http://slow.test/a", 0.01)  # the next slot is 1/(0.95 x 4) s away
    assert pacer.again("http://slow.test/a", 5.0)
    with store.dialect.transaction() as cur:
        cur.execute("SELECT at FROM host_grants WHERE host = 'slow.test' ORDER BY at")
        grants = [float(r[0]) for r in cur.fetchall()]
    assert len(grants) == 2 and grants[1] - grants[0] >= 1 / (4 * 0.95) - 0.01, grants
    assert pacer.again("http://free.test/a", 0.0)  # no rate: nothing to wait for
