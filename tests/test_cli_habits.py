"""The CLI's habits: --version, completion, every setting's variable in --help, enum choices,
`status --json`, and doctor's exit codes (2: fix the settings; 3: try again later)."""

from __future__ import annotations

import importlib.metadata
import json
import re
from urllib.parse import urlsplit

import pytest

from runner.cli import common
from tests.support.services import run_cli, runner_env, wait_until, worker

VERSION = importlib.metadata.version("urltester")
SETTINGS_VARIABLES = ["URLTESTER_DATABASE_URL", "URLTESTER_BROKER_URL", "URLTESTER_QUEUE",
                      "URLTESTER_PUBLISH_TIMEOUT", "URLTESTER_DENY_PRIVATE", "URLTESTER_ALLOW_NETWORKS"]
WORKER_VARIABLES = ["URLTESTER_CONCURRENCY", "URLTESTER_PROCESSES", "URLTESTER_PREFETCH",
                    "URLTESTER_SHUTDOWN_TIMEOUT", "URLTESTER_HOLD_BUDGET", "URLTESTER_LOG_LEVEL"]


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    return runner_env(sqlite_url, None)


def test_version_is_the_installed_one(env) -> None:
    out = run_cli(["--version"], env)
    assert out.returncode == 0 and out.stdout == f"urltester {VERSION}\n"


@pytest.mark.parametrize(("args", "variables"), [(["--help"], SETTINGS_VARIABLES),
                                                 (["start", "--help"],
                                                  WORKER_VARIABLES + SETTINGS_VARIABLES[2:3] + SETTINGS_VARIABLES[4:])])
def test_help_names_every_variable_whole_at_80_columns_and_never_its_value(env, args, variables) -> None:
    env = {**env, "COLUMNS": "80", "URLTESTER_DATABASE_URL": "postgresql://u:topsecret@db.invalid/x"}
    out = run_cli(args, env)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # click wraps "[env var: NAME]" across lines at spaces only
    for name in variables:
        assert f"env var: {name}" in text, name
    assert "topsecret" not in out.stdout
    assert max(len(line) for line in out.stdout.splitlines()) <= 80


def test_start_up_and_completion_import_no_broker_database_or_http_library(env) -> None:
    """Every TAB runs `runner`: it must not pay for kombu, psycopg2 or requests."""
    for args, extra in ((["--version"], {}), ([], {"_RUNNER_COMPLETE": "complete_bash", "COMP_CWORD": "3",
                                                    "COMP_WORDS": "runner results --format "})):
        out = run_cli(args, {**env, **extra, "PYTHONPROFILEIMPORTTIME": "1"})
        loaded = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
        assert "typer" in loaded, out.stderr[:300]  # the import log is read
        assert not loaded & {"kombu", "psycopg2", "requests", "urllib3"}, sorted(
            loaded & {"kombu", "psycopg2", "requests"})


@pytest.mark.parametrize("command", ["", "start", "submit", "results", "requeue", "import", "prune", "status", "doctor",
                                     "tui", "db upgrade", "dead", "dead list", "dead show", "dead requeue",
                                     "dead purge"])
def test_every_help_fits_80_columns(env, command) -> None:
    out = run_cli([*command.split(), "--help"], {**env, "COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    wide = [line for line in out.stdout.splitlines() if len(line) > 80]
    assert not wide, wide


def test_bad_variables_are_named_by_typer_with_exit_2(env) -> None:
    level = run_cli(["start"], {**env, "URLTESTER_LOG_LEVEL": "loud"})
    assert level.returncode == 2
    assert "'--log-level' (env var: 'URLTESTER_LOG_LEVEL')" in level.stderr and "'loud' is not one of" in level.stderr
    threads = run_cli(["start"], {**env, "URLTESTER_CONCURRENCY": "0"})
    assert threads.returncode == 2 and "URLTESTER_CONCURRENCY" in threads.stderr
    private = run_cli(["status"], {**env, "URLTESTER_DENY_PRIVATE": "maybe"})
    assert private.returncode == 2 and "URLTESTER_DENY_PRIVATE" in private.stderr
    nets = run_cli(["status"], {**env, "URLTESTER_ALLOW_NETWORKS": "10.0.0.0/8, nope"})
    assert nets.returncode == 2 and "'nope' (--allow-network, URLTESTER_ALLOW_NETWORKS) is not a network" in nets.stderr
    for out in (level, threads, private, nets):
        assert "Traceback" not in out.stderr


def test_choices_are_enums_typer_checks_and_completes(env) -> None:
    state = run_cli(["results", "--state", "bogus"], env)
    assert state.returncode == 2 and "'bogus' is not one of 'queued', 'running', 'done'" in state.stderr
    method = run_cli(["submit", "--method", "BREW", "http://127.0.0.1:1/"], env)
    assert method.returncode == 2 and "--method" in method.stderr
    fmt = run_cli(["import", "-", "--format", "xml"], env, input="")
    assert fmt.returncode == 2 and "'xml' is not one of 'text', 'csv', 'jsonl'" in fmt.stderr
    completion = {**env, "_RUNNER_COMPLETE": "complete_bash", "COMP_WORDS": "runner results --format ",
                  "COMP_CWORD": "3"}
    out = run_cli([], completion)
    assert out.stdout.split() == ["table", "json", "csv", "junit"]
    commands = run_cli([], {**completion, "COMP_WORDS": "runner d", "COMP_CWORD": "1"})
    assert set(commands.stdout.split()) == {"doctor", "db", "dead"}
    assert "--install-completion" in run_cli(["--help"], env).stdout


def test_the_enums_are_the_librarys_own_choices() -> None:
    """The CLI's choices are the library's: every outcome a job can have (no_worker included)."""
    from db import STATES
    from runner.jobs import readers, report

    assert tuple(o.value for o in common.Outcome) == report.OUTCOMES
    assert tuple(s.value for s in common.State) == STATES
    assert tuple(f.value for f in common.ResultsFormat) == report.FORMATS
    assert tuple(f.value for f in common.ImportFormat) == readers.IMPORT_FORMATS


def test_status_json_has_stable_keys_and_masks_passwords(env, target) -> None:
    run_cli(["submit", target.url("/ok"), target.url("/status/500")], env)
    out = run_cli(["status", "--json"], env)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) >= {"database", "broker", "in_process", "jobs", "outcomes", "checks_last_minute", "queue",
                        "broker_error", "workers"}
    assert doc["jobs"] == {"queued": 0, "running": 0, "done": 2, "cancelled": 0, "ok": 1, "failed": 1,
                           "unpublished": 0}
    assert doc["outcomes"] == {"http_error": 1, "ok": 1} and doc["in_process"] is True and doc["queue"] is None


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.e2e
def test_worker_options_come_from_their_variables_and_status_json_shows_the_worker(
        pg_url, amqp_url, queue_name) -> None:
    # The variable names another queue: the options given on the command line win over it.
    env = runner_env(pg_url, amqp_url, "not-this-queue", URLTESTER_CONCURRENCY="3", URLTESTER_PROCESSES="1",
                     URLTESTER_LOG_LEVEL="warning")

    def status() -> dict:
        return json.loads(run_cli(["--queue", queue_name, "status", "--json"], env).stdout)

    def workers() -> list[dict]:
        return status()["workers"]

    with worker(env, "--queue", queue_name):
        wait_until(lambda: len(workers()) == 1, 30, message="the worker's heartbeat")
        [w] = workers()
        assert w["concurrency"] == 3 and w["queue"] == queue_name
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", w["last_seen"])
        doc = status()
        assert doc["queue"]["name"] == queue_name and doc["queue"]["consumers"] == 1
        assert "guest:***@" in doc["broker"]


@pytest.mark.postgres
def test_doctor_exits_2_when_the_settings_need_fixing_and_3_when_a_service_is_down(pg_url) -> None:
    parts = urlsplit(pg_url)
    no_role = parts._replace(netloc=f"no_such_role_x:topsecret@{parts.hostname}:{parts.port or 5432}").geturl()
    refused = run_cli(["doctor"], runner_env(no_role, None))
    assert refused.returncode == 2, refused.stdout
    assert "FAILED: the database refused the connection" in refused.stdout and "topsecret" not in refused.stdout
    down = run_cli(["doctor"], runner_env("postgresql://u:pw@127.0.0.1:1/db", None))
    assert down.returncode == 3 and "FAILED: unreachable" in down.stdout


@pytest.mark.rabbitmq
def test_doctor_exits_2_for_a_broker_login_refused(sqlite_url, amqp_url) -> None:
    bad = urlsplit(amqp_url)._replace(
        netloc=f"guest:wrong-pw@{urlsplit(amqp_url).hostname}:{urlsplit(amqp_url).port or 5672}").geturl()
    out = run_cli(["doctor"], runner_env(sqlite_url, bad))
    assert out.returncode == 2, out.stdout
    assert "refused the login" in out.stdout and "wrong-pw" not in out.stdout
