"""A nameserver that never answers must not stall the checks of other names.

getaddrinfo is replaced by a function that hangs for ``*.hang.test`` names (until the test
ends) and resolves ``healthy.test`` to 127.0.0.1: the same as a resolv.conf nameserver
that drops queries, without depending on the machine's resolver timeouts.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from runner.check import transport
from runner.check.checker import Checker
from runner.check.options import parse_options
from tests.support.services import wait_until

from .conftest import Server

HUNG = 200


@pytest.fixture
def hanging_dns(monkeypatch: pytest.MonkeyPatch):
    real = socket.getaddrinfo
    release = threading.Event()
    entered: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".hang.test"):
            entered.append(host)
            release.wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "healthy.test":
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield entered
    release.set()


def test_hung_lookups_do_not_delay_a_healthy_name(checker: Checker, hostile: Server,
                                                  hanging_dns: list[str]) -> None:
    options = parse_options({"deadline": "2", "retries": "1"})
    threads = [threading.Thread(target=checker.check, args=(f"http://n{i}.hang.test/", options),
                                daemon=True) for i in range(HUNG)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(hanging_dns) >= HUNG, 10, interval=0.01, message="every lookup to hang")
    result = checker.check(hostile.url("/ok", host="healthy.test"), options)
    assert (result.outcome, result.error) == ("ok", None)
    # Not a timed goal (scripts/bench-conformance dns measures it): far below the deadline,
    # where the old pool of 64 threads made it wait the whole deadline.
    assert result.dns_ms < 1000, f"the healthy name waited {result.dns_ms:.0f} ms"
    assert len(hanging_dns) == HUNG          # every hung name got its own thread
    for thread in threads:
        thread.join(5)
    assert not any(t.is_alive() for t in threads)   # each hung check ended at its deadline


def test_checks_of_one_hung_name_share_one_lookup(hanging_dns: list[str]) -> None:
    resolver = transport.Resolver(max_pending=4)
    errors: list[BaseException] = []

    def lookup() -> None:
        try:
            resolver.resolve("same.hang.test", 80, 0.3)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=lookup) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(3)
    assert len(errors) == 20 and all(isinstance(e, TimeoutError) for e in errors)
    assert hanging_dns == ["same.hang.test"]


def test_too_many_pending_lookups_fail_at_once_as_temporary(hanging_dns: list[str]) -> None:
    resolver = transport.Resolver(max_pending=3)
    for i in range(3):
        with pytest.raises(TimeoutError):
            resolver.resolve(f"x{i}.hang.test", 80, 0.05)
    t0 = time.monotonic()
    with pytest.raises(socket.gaierror) as info:
        resolver.resolve("x9.hang.test", 80, 5)
    assert info.value.errno == socket.EAI_AGAIN
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(socket.gaierror) as info:    # also a healthy name, until lookups end
        resolver.resolve("healthy.test", 80, 1)
    assert "3 name lookups already pending" in info.value.strerror


def test_a_lookup_that_finishes_at_once_does_not_deadlock() -> None:
    # A lookup done before its done-callback is added runs the callback in the caller;
    # the callback takes the resolver's lock, so it must not be added under that lock.
    resolver = transport.Resolver(getaddrinfo=lambda host, port, *a: [("answer",)])
    finished = threading.Event()

    def many() -> None:
        for i in range(2000):
            resolver.resolve(f"fast{i % 7}.test", 80, 1)
        finished.set()

    threading.Thread(target=many, daemon=True).start()
    assert finished.wait(20), "resolve() deadlocked"
    assert resolver.pending() == 0
