"""Regions on the real services: one `runner start --region` per region, one result per
(job, region), the job's outcome by quorum, and no_worker for a region nobody serves.

The far region's worker runs with --deny-private, so it cannot reach the 127.0.0.1 target
that the near regions reach: the same URL is ok from one place and blocked from another.
"""

import csv
import io
import json
import os
import signal
import time

import pytest

from db import open_store
from tests.support.services import delete_queues, run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]

SMALL = ("--processes", "1", "--concurrency", "8")


@pytest.fixture
def env(pg_url, amqp_url, queue_name):
    yield runner_env(pg_url, amqp_url, queue_name)
    for region in ("near", "far", "ghost", "a", "b"):
        delete_queues(amqp_url, f"{queue_name}@{region}")


def rows(env, *args: str) -> list[dict]:
    out = run_cli(["results", "--format", "json", *args], env)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def live_regions(pg_url) -> set[str]:
    store = open_store(pg_url)
    try:
        return {w.region for w in store.workers()}
    finally:
        store.close()


def test_regions_see_different_results_and_each_quorum_follows_its_rule(env, pg_url, target, tmp_path) -> None:
    with worker(env, *SMALL, "--region", "near", log_path=tmp_path / "near.log"), \
         worker(env, *SMALL, log_path=tmp_path / "default.log"), \
         worker(env, *SMALL, "--region", "far", "--deny-private", log_path=tmp_path / "far.log"):
        wait_until(lambda: live_regions(pg_url) == {"near", "default", "far"}, 60, 0.3, "three regions' workers")
        expected = {"any": True, "all": False, "majority": True, "2": True, "3": False}
        for rule in expected:
            out = run_cli(["submit", target.url(f"/ok?rule={rule}"), "--regions", "near,default,far",
                           "--quorum", rule, "--wait", "--wait-timeout", "60", "--batch", f"q-{rule}"], env)
            assert out.returncode == (0 if expected[rule] else 1), out.stdout + out.stderr
        # Every region has reported once the slowest is in; then the views are complete.
        wait_until(lambda: all(r["regions"][k]["outcome"] for r in rows(env) for k in r["regions"]), 30, 0.3,
                   "every region's result")
        status = run_cli(["status"], env).stdout
    by_rule = {r["batch"][2:]: r for r in rows(env)}
    for rule, ok in expected.items():
        row = by_rule[rule]
        assert row["quorum"] == rule and row["ok"] is ok and row["state"] == "done"
        regions = row["regions"]
        assert set(regions) == {"near", "default", "far"}
        assert regions["near"]["outcome"] == "ok" and regions["near"]["status_code"] == 200
        assert regions["default"]["outcome"] == "ok"
        assert regions["far"]["outcome"] == "blocked" and "address policy" in regions["far"]["error"]
        assert regions["far"]["worker"] and regions["near"]["worker"] != regions["far"]["worker"]
        assert row["outcome"] == ("ok" if ok else "blocked")
    assert target.hits["/ok"] == 2 * len(expected)  # near and default reached it; far never did
    # csv: one row per job and region; junit: each region's result in the case's output.
    out = run_cli(["results", "--format", "csv", "--batch", "q-all"], env)
    table = list(csv.DictReader(io.StringIO(out.stdout)))
    assert sorted((r["region"], r["region_outcome"]) for r in table) == [
        ("default", "ok"), ("far", "blocked"), ("near", "ok")]
    junit = run_cli(["results", "--format", "junit", "--batch", "q-all"], env).stdout
    assert "region far: blocked" in junit and "region near: ok, status 200" in junit and "<failure" in junit
    for region in ("near", "default", "far"):
        assert f"region    {region}: 1 process alive" in status


def test_a_region_without_a_live_worker_is_no_worker_within_the_bound(env, pg_url, target, tmp_path) -> None:
    with worker(env, *SMALL, "--region", "near", log_path=tmp_path / "near.log"):
        wait_until(lambda: live_regions(pg_url) == {"near"}, 60, 0.3, "the near worker")
        started = time.monotonic()
        out = run_cli(["submit", target.url("/ok"), "--regions", "near,ghost", "--quorum", "all",
                       "--no-worker-after", "2", "--wait", "--wait-timeout", "60"], env)
        took = time.monotonic() - started
    assert out.returncode == 1, out.stdout + out.stderr  # ghost counts as not ok: quorum all fails
    assert "near ✓ ok" in out.stdout and "ghost ✗ no_worker" in out.stdout  # --wait's table, a line per region
    assert took < 2 + 10, took  # the bound, plus a sweep interval and process start-up
    [row] = rows(env)
    assert row["ok"] is False and row["outcome"] == "no_worker"
    assert row["regions"]["near"]["outcome"] == "ok"
    assert row["regions"]["ghost"]["outcome"] == "no_worker"
    assert "no live worker in region ghost" in row["regions"]["ghost"]["error"]


def test_kill_9_of_one_regions_worker_mid_batch_leaves_every_job_and_region_done_once(env, pg_url, target,
                                                                                      tmp_path) -> None:
    n = 300
    urls = "\n".join(target.url(f"/ok?ms=20&n={i}") for i in range(n)) + "\n"
    (tmp_path / "urls.txt").write_text(urls)
    with worker(env, *SMALL, "--region", "b", log_path=tmp_path / "b.log"):
        with worker(env, *SMALL, "--region", "a", log_path=tmp_path / "a1.log") as first:
            wait_until(lambda: live_regions(pg_url) == {"a", "b"}, 60, 0.3, "both regions' workers")
            out = run_cli(["import", str(tmp_path / "urls.txt"), "--regions", "a,b", "--quorum", "all",
                           "--no-worker-after", "600"], env)
            assert out.returncode == 0, out.stderr

            def done_in_a() -> int:
                store = open_store(pg_url)
                try:
                    with store.dialect.transaction() as cur:
                        cur.execute("SELECT count(*) FROM region_results WHERE region = 'a'")
                        return cur.fetchone()[0]
                finally:
                    store.close()

            wait_until(lambda: done_in_a() >= 30, 60, 0.05, "region a mid-batch")
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        assert done_in_a() < n, "the kill came too late to test anything"
        with worker(env, *SMALL, "--region", "a", log_path=tmp_path / "a2.log"):
            out = run_cli(["results", "--format", "json"], env)
            wait_until(lambda: all(all(v["outcome"] for v in r["regions"].values()) for r in rows(env)),
                       120, 0.5, "every job in both regions")
    store = open_store(pg_url)
    try:
        with store.dialect.transaction() as cur:
            cur.execute("SELECT region, count(*), count(DISTINCT job_id) FROM region_results GROUP BY region")
            counts = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
            cur.execute("SELECT count(*), count(DISTINCT job_id) FROM results")
            decided = cur.fetchone()
    finally:
        store.close()
    assert counts == {"a": (n, n), "b": (n, n)}
    assert decided == (n, n)
    final = rows(env)
    assert len(final) == n and all(r["ok"] and r["state"] == "done" for r in final)


def test_an_import_waiting_on_a_region_nobody_serves_ends_with_no_worker(env, tmp_path) -> None:
    (tmp_path / "urls.txt").write_text("http://a.test/\nhttp://b.test/\n")
    started = time.monotonic()
    out = run_cli(["import", str(tmp_path / "urls.txt"), "--regions", "ghost", "--no-worker-after", "1",
                   "--wait", "--wait-timeout", "60"], env)
    took = time.monotonic() - started
    assert out.returncode == 1 and "no_worker 2" in out.stdout, out.stdout + out.stderr
    assert took < 1 + 10, took  # no worker at all: the waiting import itself reports them
    assert {r["regions"]["ghost"]["outcome"] for r in rows(env)} == {"no_worker"}
