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
from tests.support.services import run_cli, runner_env


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
