"""Two nightly imports as a user runs them, on real PostgreSQL and RabbitMQ with a worker
process, and on the embedded default (SQLite, checks in the importing process): what
`runner changes`, `runner urls` and `runner history` say, and `--fail-on new`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import pytest

from tests.support.services import run_cli, runner_env, worker

# (name, night 1 status or None: not in night 1, night 2 status or None)
PLAN = [
    ("steady", 200, 200),
    ("broke", 200, 500),
    ("healed", 500, 200),
    ("dead", 500, 500),
    ("fresh", None, 200),
    ("old", 200, None),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[dict[str, str], object]]:
    if request.param == "sqlite":
        yield runner_env(f"sqlite:///{tmp_path}/urltester.db", None), nullcontext
    else:
        env = runner_env(request.getfixturevalue("pg_url"), request.getfixturevalue("amqp_url"),
                         request.getfixturevalue("queue_name"))

        @contextmanager
        def one_worker() -> Iterator[None]:
            with worker(env, "--processes", "1", "--concurrency", "4"):
                yield

        yield env, one_worker


def night(target, tmp_path, n: int) -> str:
    names = [name for name, *statuses in PLAN if statuses[n - 1] is not None]
    for name, *statuses in PLAN:
        if statuses[n - 1] is not None:
            target.switch[name] = statuses[n - 1]
    f = tmp_path / f"urls{n}.txt"
    f.write_text("".join(target.url(f"/switch?key={name}") + "\n" for name in names))
    return str(f)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_two_nightly_batches(setup, target, tmp_path) -> None:
    env, workers = setup
    url = {name: target.url(f"/switch?key={name}") for name, *_ in PLAN}
    with workers():
        first = run_cli(["import", night(target, tmp_path, 1), "--batch", "nightly", "--wait", "--quiet",
                         "--wait-timeout", "60"], env)
        assert first.returncode == 1, first.stderr  # two checks failed (any, the default)
        second = run_cli(["import", night(target, tmp_path, 2), "--batch", "nightly", "--wait", "--quiet",
                          "--wait-timeout", "60", "--fail-on", "new"], env)
        assert second.returncode == 1, second.stdout + second.stderr  # broke is a new failure
        third = run_cli(["import", night(target, tmp_path, 2), "--batch", "third", "--wait", "--quiet",
                         "--wait-timeout", "60", "--fail-on", "new"], env)
        assert third.returncode == 0, third.stdout + third.stderr  # failing again is no news

    # The cron line's second half, against the previous "nightly" batch.
    changes = run_cli(["changes", "--batch", "nightly", "--format", "json"], env)
    assert changes.returncode == 1, changes.stderr
    got = {row["url"]: row for row in lines(changes.stdout)}
    assert {u: row["change"] for u, row in got.items()} == {
        url["broke"]: "new_failure", url["healed"]: "recovered", url["dead"]: "still_failing",
        url["fresh"]: "new", url["old"]: "gone"}
    assert got[url["fresh"]]["before"] is None and got[url["old"]]["after"] is None
    assert got[url["broke"]]["before"]["status_code"] == 200 and got[url["broke"]]["after"]["status_code"] == 500
    assert set(got[url["broke"]]["after"]) == {"job_id", "outcome", "status_code", "total_ms", "final_url",
                                               "checked_at"}

    table = run_cli(["changes", "--batch", "nightly"], env)
    assert table.returncode == 1 and "1 new_failure, 1 recovered, 1 still_failing, 1 new, 1 gone" in table.stdout

    # The third batch against the second, by name: nothing new failed.
    calm = run_cli(["changes", "--batch", "third", "--against", "nightly", "--format", "csv"], env)
    assert calm.returncode == 0, calm.stderr
    assert calm.stdout.splitlines()[0].startswith("url,change,before_job_id")
    assert sorted(line.split(",")[1] for line in calm.stdout.splitlines()[1:]) == ["still_failing", "still_failing"]

    unknown = run_cli(["changes", "--batch", "third", "--against", "nope"], env)
    assert unknown.returncode == 2 and "--against" in unknown.stderr and "nope" in unknown.stderr

    failing = lines(run_cli(["urls", "--state", "failing", "--format", "json"], env).stdout)
    assert sorted(row["url"] for row in failing) == sorted([url["broke"], url["dead"]])
    dead = next(row for row in failing if row["url"] == url["dead"])
    assert dead["checks"] == 3 and dead["ok"] == 0 and dead["uptime"] == 0.0 and dead["last"]["status_code"] == 500
    assert set(dead) == {"url", "state", "since", "last_checked_at", "last", "checks", "ok", "uptime", "latency_ms",
                         "id"}

    every = lines(run_cli(["urls", "--format", "json", "--sort", "url"], env).stdout)
    assert [row["url"] for row in every] == sorted(url.values())  # one row per URL, however many jobs
    steady = next(row for row in every if row["url"] == url["steady"])
    assert steady["state"] == "ok" and steady["checks"] == 3 and steady["uptime"] == 1.0
    assert steady["latency_ms"]["p50"] is not None

    story = run_cli(["history", url["broke"], "--format", "json"], env)
    assert story.returncode == 0, story.stderr
    obj = json.loads(story.stdout)
    assert obj["state"] == "failing"
    assert [(c["from"], c["to"]) for c in obj["changes"]] == [("ok", "failing"), (None, "ok")]
    assert [p["status_code"] for p in obj["recent"]] == [500, 500, 200]
    assert obj["recent"][0]["batch"] == "third"

    shown = run_cli(["history", url["broke"]], env)
    assert "✗✗" in shown.stdout and "new_failure" in shown.stdout

    never = run_cli(["history", target.url("/never")], env)
    assert never.returncode == 1 and never.stdout == "" and len(never.stderr.splitlines()) == 1
    assert "never checked" in never.stderr

    bad = run_cli(["urls", "--window", "a week"], env)
    assert bad.returncode == 2 and "--window" in bad.stderr

    jobs = run_cli(["results", "--url", url["dead"], "--format", "json"], env)
    assert [row["url"] for row in lines(jobs.stdout)] == [url["dead"]] * 3

    # Retention: the results go, the URLs' figures and changes stay.
    pruned = run_cli(["prune", "--older-than", "0s"], env)
    assert pruned.returncode == 0 and "pruned 15 done jobs" in pruned.stdout, pruned.stdout + pruned.stderr
    after = {row["url"]: row for row in lines(run_cli(["urls", "--format", "json"], env).stdout)}
    assert after[url["steady"]]["checks"] == 3 and after[url["dead"]]["uptime"] == 0.0
    kept = json.loads(run_cli(["history", url["broke"], "--format", "json"], env).stdout)
    assert len(kept["changes"]) == 2 and kept["recent"] == [] and kept["last"]["status_code"] == 500


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_two_workers_one_url_a_hundred_times(pg_url, amqp_url, queue_name, target, tmp_path) -> None:
    """One URL submitted 100 times at once, checked by two worker processes: every check
    is counted once in its rollup, and every change follows the one before it."""
    from db import open_store

    env = runner_env(pg_url, amqp_url, queue_name)
    f = tmp_path / "same.txt"
    f.write_text((target.url("/flip?key=c") + "\n") * 100)
    with worker(env, "--processes", "1", "--concurrency", "8"), worker(env, "--processes", "1", "--concurrency", "8"):
        out = run_cli(["import", str(f), "--keep-duplicates", "--batch", "same", "--wait", "--quiet",
                       "--wait-timeout", "90"], env)
    assert out.returncode == 1, out.stderr  # half of the checks failed
    [row] = lines(run_cli(["urls", "--format", "json"], env).stdout)
    assert row["checks"] == 100 and row["ok"] == 50
    store = open_store(pg_url)
    try:
        with store.dialect.transaction(write=False) as cur:
            cur.execute("SELECT from_state, to_state FROM url_changes ORDER BY id")
            changes = cur.fetchall()
            cur.execute("SELECT sum(checks) FROM url_rollups WHERE grain = 'd' AND region = ''")
            assert cur.fetchone()[0] == 100
    finally:
        store.close()
    assert changes[0][0] is None and len(changes) >= 2
    for before, after in zip(changes, changes[1:], strict=False):
        assert after[0] == before[1]
    assert row["state"] == changes[-1][1]
