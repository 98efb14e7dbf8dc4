"""Adaptive concurrency on the real services: a worker on its defaults finds more than its
starting 128 checks at once on slow targets, and `runner status` shows the value it uses."""

from __future__ import annotations

import re

import pytest

from runner.jobs.runtime import Runtime
from runner.jobs.settings import Settings
from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]


def concurrency_in_status(env: dict[str, str]) -> list[tuple[int, str]]:
    out = run_cli(["status"], env)
    assert out.returncode == 0, out.stderr
    return [(int(n), how) for n, how in re.findall(r"concurrency (\d+) \((adaptive, up to \d+|fixed)\)", out.stdout)]


# The controller's debug line for each window (runner.taskq.concurrency).
WINDOW = re.compile(r"full (True|False), CPU ([\d.]+) cores, machine (\d+)%")


def windows_held_by_a_busy_cpu(log: str) -> int:
    """Windows with calls waiting for a thread while the CPU was not free: the controller
    does not grow then, by design (own_busy 0.9 of a core, machine_busy 85%)."""
    return sum(full == "True" and (float(own) >= 0.9 or int(machine) >= 85)
               for full, own, machine in WINDOW.findall(log))


def test_the_default_grows_on_slow_targets_and_status_shows_it(pg_url, amqp_url, queue_name, target,
                                                                tmp_path) -> None:
    """It grows while the CPU is free. On a machine busy with other work (the suite beside
    other CPU-bound processes) the controller holds by design; the test then sees that it
    held for that reason (growth itself is unit-tested in test_limiter with a stand-in CPU)."""
    env = runner_env(pg_url, amqp_url, queue_name)
    log_path = tmp_path / "worker.log"
    with worker(env, "--processes", "1", "--max-concurrency", "300", "--log-level", "debug", log_path=log_path):
        # A backlog that outlasts the wait on a loaded machine (128 at a time: 30 s of work).
        urls = [target.url(f"/ok?ms=1000&n={i}") for i in range(4000)]
        rt = Runtime(Settings(database_url=pg_url, broker_url=amqp_url, queue=queue_name))
        try:
            assert len(rt.submit(urls, batch="slow").job_ids) == 4000
        finally:
            rt.close()

        def grew_or_held() -> bool:
            shown = concurrency_in_status(env)
            return bool(shown and shown[0][0] > 128) or windows_held_by_a_busy_cpu(log_path.read_text()) >= 10

        wait_until(grew_or_held, 90, interval=1,
                   message="the adaptive concurrency to pass 128 (or a busy CPU to hold it)")
        value, how = concurrency_in_status(env)[0]
        assert how == "adaptive, up to 300" and value <= 300
        assert value > 128 or windows_held_by_a_busy_cpu(log_path.read_text()) >= 10


def test_concurrency_fixes_it(pg_url, amqp_url, queue_name) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    with worker(env, "--processes", "1", "--concurrency", "6"):
        wait_until(lambda: bool(concurrency_in_status(env)), 20, interval=0.5, message="a heartbeat")
        assert concurrency_in_status(env) == [(6, "fixed")]
