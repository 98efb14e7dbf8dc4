"""The issue's nightly case through the whole path: imports checked by a worker process on
real PostgreSQL and RabbitMQ, the result's transaction recording changes and their outbox
rows (the history's _on_changes hook), the worker's sender delivering them to a loopback
JSON webhook. Needs the URL history (issue 21): skipped without it."""

from __future__ import annotations

import pytest

from tests.support.services import run_cli, runner_env, wait_until, worker
from tests.support.webhook import Receiver

pytest.importorskip("db.history", reason="needs the URL history (issue 21): changes and the _on_changes hook")

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]

# name: (night 1 status, night 2 status)
PLAN = {"steady1": (200, 200), "steady2": (200, 200), "broke1": (200, 500), "broke2": (200, 500),
        "healed1": (500, 200), "healed2": (500, 200), "dead1": (500, 500), "dead2": (500, 500)}


def night(target, tmp_path, n: int) -> str:
    for name, statuses in PLAN.items():
        target.switch[name] = statuses[n - 1]
    f = tmp_path / f"urls{n}.txt"
    f.write_text("".join(target.url(f"/switch?key={name}") + "\n" for name in PLAN))
    return str(f)


def pending(env: dict[str, str]) -> bool:
    listed = run_cli(["alerts", "list"], env).stdout
    return "waiting: 0;" not in listed


def test_a_nightly_batch_tells_exactly_its_new_failures_and_recoveries(pg_url, amqp_url, queue_name, target,
                                                                      tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    with Receiver() as receiver:
        added = run_cli(["alerts", "add", "ops", receiver.url, "--batch", "nightly"], env)
        assert added.returncode == 0, added.stderr
        with worker(env, "--processes", "1", "--concurrency", "4", log_path=tmp_path / "worker.log"):
            for n in (1, 2):
                done = run_cli(["import", night(target, tmp_path, n), "--batch", "nightly", "--wait", "--quiet",
                                "--wait-timeout", "60"], env)
                assert done.returncode == 1, done.stderr  # some checks failed
            wait_until(lambda: receiver.count() >= 4 and not pending(env), 60, message="the night's alerts")
        titles = sorted(receiver.titles())
        assert titles == sorted([f"urltester: new_failure: {target.url('/switch?key=broke1')}",
                                 f"urltester: new_failure: {target.url('/switch?key=broke2')}",
                                 f"urltester: recovered: {target.url('/switch?key=healed1')}",
                                 f"urltester: recovered: {target.url('/switch?key=healed2')}"])
        body = next(m["message"] for m in receiver.messages if "broke1" in m["title"])
        assert "Change: new_failure (ok → failing)" in body and "Status code: 500" in body and "Batch: nightly" in body
