"""The CLI on the embedded default (SQLite + in-process checks): what a new user meets first."""

import json
from urllib.parse import urlsplit

import pytest

from tests.support.services import run_cli, runner_env


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    return runner_env(sqlite_url, None)


def test_submit_wait_prints_results_and_exit_code_reflects_outcomes(env, target) -> None:
    ok = run_cli(["submit", target.url("/ok"), "--wait"], env)
    assert ok.returncode == 0, ok.stderr
    assert "✓ ok" in ok.stdout and target.url("/ok") in ok.stdout
    bad = run_cli(["submit", target.url("/status/404"), "--wait"], env)
    assert bad.returncode == 1
    assert "http_error" in bad.stdout


def test_submit_names_each_invalid_url_and_keeps_the_valid_ones(env, target) -> None:
    out = run_cli(["submit", "ftp://x.test/", target.url("/ok"), "http://", "--wait"], env)
    assert out.returncode == 1
    assert "unsupported scheme 'ftp'" in out.stderr
    assert "no host: 'http://'" in out.stderr
    rows = [json.loads(line) for line in run_cli(["results", "--format", "json"], env).stdout.splitlines()]
    assert [r["url"] for r in rows] == [target.url("/ok")]


def test_results_json_schema_is_stable(env, target) -> None:
    run_cli(["submit", target.url("/ok"), "--batch", "smoke"], env)
    out = run_cli(["results", "--format", "json", "--batch", "smoke"], env)
    [row] = [json.loads(line) for line in out.stdout.splitlines()]
    for key in ("id", "url", "batch", "state", "outcome", "ok", "status_code", "total_ms", "attempts",
                "error", "final_url", "submitted_at", "checked_at"):
        assert key in row, key
    assert row["batch"] == "smoke" and row["state"] == "done" and row["ok"] is True
    assert row["status_code"] == 200 and row["outcome"] == "ok" and row["attempts"] == 1
    assert row["submitted_at"].endswith("Z") and row["checked_at"].endswith("Z")
    csv_out = run_cli(["results", "--format", "csv"], env).stdout.splitlines()
    assert csv_out[0].startswith("id,url,batch,state,outcome,ok,status_code")
    assert len(csv_out) == 2


def test_password_in_a_target_url_is_never_printed(env, target) -> None:
    url = target.url("/ok").replace("http://", "http://alice:hunter2@")
    out = run_cli(["submit", url, "--wait"], env)
    listing = run_cli(["results", "--format", "json"], env)
    for text in (out.stdout, out.stderr, listing.stdout):
        assert "hunter2" not in text
    assert "alice:***@" in listing.stdout


def test_bad_settings_give_one_clear_line(sqlite_url) -> None:
    bad_db = run_cli(["status"], runner_env("mysql://u:topsecret@h/db", None))
    assert bad_db.returncode == 2
    assert bad_db.stderr.count("\n") == 1 and "unsupported scheme 'mysql'" in bad_db.stderr
    assert "topsecret" not in bad_db.stderr and "Traceback" not in bad_db.stderr
    bad_broker = run_cli(["status"], runner_env(sqlite_url, "redis://:topsecret@h/0"))
    assert bad_broker.returncode == 2 and "unsupported scheme 'redis'" in bad_broker.stderr
    assert "topsecret" not in bad_broker.stderr
    down = run_cli(["status"], runner_env("postgresql://u:topsecret@127.0.0.1:1/db", None))
    assert down.returncode == 3 and "database unreachable" in down.stderr and "topsecret" not in down.stderr


@pytest.mark.postgres
def test_a_database_that_refuses_the_settings_is_a_usage_error_not_an_outage(pg_url) -> None:
    """Exit 2 (fix the settings) rather than 3 (try again later): a worker starting would
    otherwise wait for a database that will never let it in."""
    parts = urlsplit(pg_url)
    no_role = parts._replace(netloc=f"no_such_role_x:topsecret@{parts.hostname}:{parts.port or 5432}").geturl()
    no_db = parts._replace(path="/no_such_database_x").geturl()
    for url, says in ((no_role, 'role "no_such_role_x" does not exist'),
                      (no_db, 'database "no_such_database_x" does not exist')):
        for command in (["status"], ["start"]):
            out = run_cli(command, runner_env(url, "amqp://guest:guest@127.0.0.1:1//"), timeout=30)
            assert out.returncode == 2, (command, out.stderr)
            assert "database refused the connection" in out.stderr and says in out.stderr
            assert "topsecret" not in out.stderr


def test_start_refuses_the_in_memory_broker(env) -> None:
    out = run_cli(["start"], env)
    assert out.returncode == 2
    assert "URLTESTER_BROKER_URL=amqp://" in out.stderr


def test_bad_check_option_is_refused_at_submit_time(env, target) -> None:
    out = run_cli(["submit", target.url("/ok"), "--expect-status", "abc"], env)
    assert out.returncode == 2 and "expect" in out.stderr
    assert run_cli(["results", "--format", "json"], env).stdout == ""


def test_doctor_and_db_upgrade_on_the_embedded_default(env) -> None:
    from db import migrations

    latest = max(version for version, _ in migrations.SQLITE)
    up = run_cli(["db", "upgrade"], env)
    assert up.returncode == 0 and f"schema version {latest}" in up.stdout
    doc = run_cli(["doctor"], env)
    assert doc.returncode == 0 and f"ok: schema version {latest}" in doc.stdout and "in-memory" in doc.stdout


def test_doctor_names_what_is_wrong_without_passwords(sqlite_url) -> None:
    out = run_cli(["doctor"], runner_env(sqlite_url, "amqp://guest:s3cr3t@127.0.0.1:1//"))
    assert out.returncode == 3
    assert "FAILED: RabbitMQ at amqp://guest:***@127.0.0.1:1// is unreachable" in out.stdout
    assert "s3cr3t" not in out.stdout + out.stderr


def test_requeue_on_the_embedded_default_checks_before_it_exits(env, sqlite_url, target) -> None:
    """Jobs left queued (their process died before the check) are checked by `runner requeue`."""
    from db import open_store
    from db.models import NewJob

    store = open_store(sqlite_url)
    try:
        ids = store.insert_jobs(None, [NewJob(target.url(f"/ok?n={n}")) for n in range(40)])
    finally:
        store.close()
    out = run_cli(["requeue", "--stale", "0s"], env)
    assert out.returncode == 0, out.stderr
    assert "re-published 40 jobs" in out.stdout
    rows = [json.loads(line) for line in run_cli(["results", "--format", "json"], env).stdout.splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert {(r["state"], r["outcome"]) for r in rows} == {("done", "ok")}
