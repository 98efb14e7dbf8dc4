"""Fleet-wide host limits on the real services: two worker processes keep one host's
rate, connection and Retry-After limits together, measured at the target, while another
host's checks go at full speed."""

from __future__ import annotations

import time

import pytest

from db import open_store
from runner.jobs.runtime import Runtime
from runner.jobs.settings import Settings
from tests.support.counting import LATE_STAMP, CountingTarget, most_in_any_second
from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]


@pytest.fixture
def host_a():
    with CountingTarget("127.0.0.2", default_delay_ms=200) as server:
        yield server


@pytest.fixture
def host_b():
    with CountingTarget("127.0.0.3", default_delay_ms=200) as server:
        yield server


def submit(pg_url: str, amqp_url: str, queue: str, urls: list[str]) -> list[int]:
    rt = Runtime(Settings(database_url=pg_url, broker_url=amqp_url, queue=queue))
    try:
        return rt.submit(urls).job_ids
    finally:
        rt.close()


def done(pg_url: str, ids: list[int]) -> int:
    store = open_store(pg_url, max_connections=1)
    try:
        return len(store.done_ids(ids))
    finally:
        store.close()


def test_two_workers_keep_one_hosts_rate_and_connections_and_leave_others_alone(
        pg_url, amqp_url, queue_name, host_a, host_b, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    out = run_cli(["limits", "set", "127.0.0.2", "--rate", "10", "--connections", "2"], env)
    assert out.returncode == 0, out.stderr
    assert "127.0.0.2: rate 10 checks/s, connections 2 at once" in out.stdout
    with worker(env, "--processes", "2", log_path=tmp_path / "worker.log"):
        a_ids = submit(pg_url, amqp_url, queue_name, [f"{host_a.base}/a?n={i}" for i in range(100)])
        started = time.monotonic()
        b_ids = submit(pg_url, amqp_url, queue_name, [f"{host_b.base}/b?n={i}" for i in range(300)])
        wait_until(lambda: done(pg_url, b_ids) == 300, 30, interval=0.2, message="host B's checks")
        b_seconds = time.monotonic() - started
        a_done_then = done(pg_url, a_ids)
        wait_until(lambda: done(pg_url, a_ids) == 100, 40, interval=0.5, message="host A's checks")
    # Connections: 2 at once, each 200 ms, so at most 10/s anyway; the rate bounds it too.
    assert host_a.max_inflight <= 2
    assert most_in_any_second(host_a.arrivals) <= 10 + LATE_STAMP
    assert len(host_a.arrivals) == 100
    # B went at full speed beside A's queue: 300 checks of 200 ms, done long before A's
    # 100 at ~10/s (A's waiting calls hold no thread: they are deferred).
    assert b_seconds < 8, b_seconds
    assert a_done_then < 100
    assert host_b.max_inflight > 10


def test_retry_after_pauses_the_host_for_every_worker(pg_url, amqp_url, queue_name, host_a, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name, URLTESTER_HOST_RATE="20")
    with worker(env, "--processes", "2", log_path=tmp_path / "worker.log"):
        wait_until(lambda: "2 processes alive" in run_cli(["status"], env).stdout, 30, interval=0.5,
                   message="2 workers")
        host_a.throttle(3)
        ids = submit(pg_url, amqp_url, queue_name, [f"{host_a.base}/p?n={i}" for i in range(80)])
        wait_until(lambda: done(pg_url, ids) == 80, 40, interval=0.5, message="the checks")
    t0 = host_a.throttled_at
    assert t0 is not None
    # Checks that had started before the 429 came back may still arrive just after it; none
    # may start later, on either worker, until the 3 s are over.
    during = [t - t0 for t in host_a.arrivals if t0 + 0.3 < t < t0 + 2.9]
    assert during == [], during
    assert most_in_any_second(host_a.arrivals) <= 20 + LATE_STAMP
    limits = run_cli(["limits", "list"], env)
    assert limits.returncode == 0 and "rate 20 checks/s" in limits.stdout


def test_a_worker_killed_mid_check_frees_its_connection_within_the_lease_bound(
        pg_url, amqp_url, queue_name, host_a, tmp_path) -> None:
    import os
    import signal

    from db.limits import LEASE_TTL

    env = runner_env(pg_url, amqp_url, queue_name, URLTESTER_HOST_CONNECTIONS="1")
    with worker(env, "--processes", "1", log_path=tmp_path / "first.log") as first:
        ids = submit(pg_url, amqp_url, queue_name, [f"{host_a.base}/slow?ms=6000", f"{host_a.base}/next?ms=0"])
        wait_until(lambda: host_a.inflight == 1, 20, message="the first check in flight")
        os.killpg(first.pid, signal.SIGKILL)  # mid-check: its lease stays in the database
        killed = time.time()
        first.wait(10)
    seen = len(host_a.arrivals)
    with worker(env, "--processes", "1", log_path=tmp_path / "second.log"):
        wait_until(lambda: done(pg_url, ids) == 2, LEASE_TTL + 30, interval=0.5, message="both checks")
    later = host_a.arrivals[seen:]
    assert later, "the second worker never reached the host"
    waited = later[0] - killed
    # Blocked no longer than the dead worker's lease (renewed every 5 s, 15 s to live).
    assert waited <= LEASE_TTL + 5, waited
    assert host_a.max_inflight == 1
