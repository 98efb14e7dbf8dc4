"""One host's backlog never holds up another's checks (issue 25), on the real services.

Two ``runner start`` processes; host A's backlog waits on its rate slots, host B's checks
are submitted right behind it in the queue. What is asserted is an order, not a time: every
check of B is stored before A's backlog is half done. Two ways a limit is known: the
workers' ``--host-rate`` (only the workers know it: they defer A's calls to the broker's
delay queues) and ``runner limits set`` (the submitter knows it too: A's calls go to the
delay queues at once, with their slots).
"""

from __future__ import annotations

import pytest

from db import open_store
from runner.jobs.runtime import Runtime
from runner.jobs.settings import Settings
from tests.support.counting import LATE_STAMP, CountingTarget, most_in_any_second
from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]

A_URLS = 200  # at 10/s: half of them take 10 s
B_URLS = 30


def done(pg_url: str, ids: list[int]) -> int:
    store = open_store(pg_url, max_connections=1)
    try:
        return len(store.done_ids(ids))
    finally:
        store.close()


@pytest.mark.parametrize("how", ["--host-rate", "runner limits set"])
def test_checks_of_another_host_are_stored_before_a_limited_hosts_backlog_is_half_done(
        pg_url, amqp_url, queue_name, tmp_path, how) -> None:
    if how == "--host-rate":
        env = runner_env(pg_url, amqp_url, queue_name)
        args = ["--processes", "1", "--host-rate", "10"]  # A and B both limited, by the workers only
    else:
        env = runner_env(pg_url, amqp_url, queue_name)
        out = run_cli(["limits", "set", "127.0.0.2", "--rate", "10"], env)
        assert out.returncode == 0, out.stderr
        args = ["--processes", "1"]  # A limited fleet-wide, B not
    with CountingTarget("127.0.0.2", default_delay_ms=50) as a, CountingTarget("127.0.0.3", default_delay_ms=50) as b, \
            worker(env, *args, log_path=tmp_path / "first.log"), worker(env, *args, log_path=tmp_path / "second.log"):
        wait_until(lambda: "2 processes alive" in run_cli(["status"], env).stdout, 60, interval=0.5,
                   message="2 workers")
        rt = Runtime(Settings(database_url=pg_url, broker_url=amqp_url, queue=queue_name))
        try:
            a_ids = rt.submit([f"{a.base}/a?n={i}" for i in range(A_URLS)]).job_ids
            b_ids = rt.submit([f"{b.base}/b?n={i}" for i in range(B_URLS)]).job_ids
        finally:
            rt.close()
        wait_until(lambda: done(pg_url, b_ids) == B_URLS, 120, interval=0.2, message="host B's checks")
        # A's stored results only grow: counted after B's last, this is at least what A had then.
        a_done = done(pg_url, a_ids)
    assert a_done < A_URLS // 2, f"{a_done} of A's {A_URLS} were done before B's {B_URLS}"
    assert len(b.arrivals) == B_URLS
    assert most_in_any_second(a.arrivals) <= 10 + LATE_STAMP
