"""A job's times tell the truth: submitted, then started (when its check began), then
checked, for every job of a run on the real services with two worker processes."""

import json

import pytest

from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]


def test_submitted_then_started_then_checked_for_every_job_of_two_workers(pg_url, amqp_url, queue_name,
                                                                         target, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    urls = [target.url(f"/ok?n={i}") for i in range(400)]
    with worker(env, "--processes", "1", "--concurrency", "16", log_path=tmp_path / "a.log"), \
            worker(env, "--processes", "1", "--concurrency", "16", log_path=tmp_path / "b.log"):
        wait_until(lambda: "2 processes alive" in run_cli(["status"], env).stdout, 60, interval=0.5,
                   message="two workers")
        out = run_cli(["submit", *urls, "--wait", "--wait-timeout", "120"], env)
        assert out.returncode == 0, out.stdout + out.stderr
    listed = run_cli(["results", "--format", "json", "--limit", "1000"], env)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 400 and {r["state"] for r in rows} == {"done"}
    wrong = [(r["id"], r["submitted_at"], r["started_at"], r["checked_at"]) for r in rows
             if not r["submitted_at"] <= r["started_at"] <= r["checked_at"]]
    assert not wrong, f"{len(wrong)} of 400 jobs out of order, e.g. {wrong[:3]}"
