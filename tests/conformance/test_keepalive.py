"""nginx and Apache httpd with keep-alive limits turned low: 500 checks, 500 ok, none flaky.

``--retries 1``: a check that met a closed keep-alive connection and counted it as a
failed attempt would be a failure here, not a flaky success.
"""

from __future__ import annotations

import json

import pytest

from runner.check.checker import Checker
from runner.check.options import parse_options
from tests.support.services import run_cli, runner_env, worker

from .conftest import Site
from .keepalive import paced_run

ONE_TRY = parse_options({"retries": "1", "deadline": "10"})
N = 500


@pytest.mark.parametrize(("server", "port"), [("nginx", "http"), ("nginx", "idle"), ("apache", "http")],
                         ids=["nginx keepalive_requests 1", "nginx keepalive_timeout 1s", "apache"])
def test_500_checks_on_closing_keepalive_connections(site: Site, checker: Checker, server: str,
                                                     port: str) -> None:
    running = site.nginx if server == "nginx" else site.apache
    urls = [running.url(f"/static/p{i % 20}.txt?n={i}", port=port) for i in range(N)]
    result = paced_run(checker, urls, ONE_TRY)
    print(result.line(f"{server} {port}"))
    assert result.outcomes == {"ok": N}
    assert result.flaky == 0


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.e2e
@pytest.mark.parametrize("server", ["nginx", "apache"])
def test_500_checks_through_runner_start(site: Site, server: str, pg_url: str, amqp_url: str,
                                         queue_name: str, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    running = site.nginx if server == "nginx" else site.apache
    urls = [running.url(f"/static/p{i % 20}.txt?n={i}") for i in range(N)]
    with worker(env, "--processes", "1", "--concurrency", "32", log_path=tmp_path / "worker.log"):
        out = run_cli(["submit", *urls, "--retries", "1", "--wait", "--wait-timeout", "90"], env,
                      timeout=150)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    rows = [json.loads(line) for line in run_cli(["results", "--format", "json"], env).stdout.splitlines()]
    assert len(rows) == N
    assert {r["outcome"] for r in rows} == {"ok"}
    assert "flaky" in rows[0] and "stale_connection_retried" in rows[0], sorted(rows[0])
    assert not any(r["flaky"] for r in rows)
    print(f"runner start on {server}: {N} checks, 0 failures, 0 flaky, "
          f"{sum(r['stale_connection_retried'] for r in rows)} stale connections re-sent")
    assert {r["attempts"] for r in rows} == {1}
