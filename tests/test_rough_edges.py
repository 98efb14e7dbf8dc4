"""What a new user meets first on the CLI: a new database, a mistyped SQLite path, a
table cut at 100 rows."""

import json
import uuid

import pytest

from db import NewJob, open_store
from tests.support.services import ROOT, run_cli, runner_env


def test_doctor_on_a_new_sqlite_database_notes_the_schema_comes_with_the_first_start(sqlite_url) -> None:
    out = run_cli(["doctor"], runner_env(sqlite_url, None))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "note: a new database (schema version 0" in out.stdout and "FAILED" not in out.stdout


@pytest.mark.postgres
def test_doctor_on_a_new_postgresql_database_is_a_note_not_a_failure(pg_url) -> None:
    out = run_cli(["doctor"], runner_env(pg_url, None))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "note: a new database (schema version 0" in out.stdout and "FAILED" not in out.stdout


@pytest.mark.parametrize("command", [["results"], ["submit", "http://127.0.0.1:9/"], ["doctor"]])
def test_a_sqlite_path_that_cannot_be_created_is_one_line_and_exit_2(command) -> None:
    out = run_cli(command, runner_env("sqlite:////proc/x/y.db", None))
    assert out.returncode == 2, out.stdout + out.stderr
    said = (out.stderr or out.stdout).strip()
    assert "Traceback" not in out.stderr and "/proc/x" in said
    if command != ["doctor"]:
        assert said.count("\n") == 0, said


def test_a_missing_folder_is_not_created_for_a_typed_path() -> None:
    folder = f"nonexistent-{uuid.uuid4().hex[:8]}"
    out = run_cli(["results"], runner_env(f"sqlite:///{folder}/dir/x.db", None))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and f"{folder}/dir" in out.stderr and "does not exist" in out.stderr
    assert not (ROOT / folder).exists()


def test_the_default_data_dir_is_created(tmp_path) -> None:
    env = runner_env("unused", None, XDG_DATA_HOME=str(tmp_path / "data"))
    del env["URLTESTER_DATABASE_URL"]
    out = run_cli(["results"], env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "data" / "urltester" / "urltester.db").is_file()


def test_results_table_says_when_it_shows_only_part(sqlite_url) -> None:
    store = open_store(sqlite_url)
    store.insert_jobs(None, [NewJob(f"http://127.0.0.1:9/p{i}") for i in range(120)])
    store.close()
    env = runner_env(sqlite_url, None)
    table = run_cli(["results"], env)
    assert table.returncode == 0, table.stderr
    assert table.stderr.strip() == "100 of 120 shown (--limit N, or --format json for all)"
    assert sum("127.0.0.1:9/p" in line for line in table.stdout.splitlines()) == 100
    assert run_cli(["results", "--limit", "5"],
                   env).stderr.strip() == "5 of 120 shown (--limit N, or --format json for all)"
    assert run_cli(["results", "--limit", "500"], env).stderr == ""  # all of them: nothing to say
    listed = run_cli(["results", "--format", "json"], env)
    assert listed.stderr == "" and len([json.loads(line) for line in listed.stdout.splitlines()]) == 120
