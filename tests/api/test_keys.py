"""One declaration of a result's fields: `runner results --format json` and the API list the
same keys, in the same order, and the API's document names them (runner/fields.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.fields import RESULT_KEYS
from tests.api.conftest import serve
from tests.support.services import run_cli, runner_env

pytestmark = pytest.mark.e2e


def test_runner_results_json_and_the_api_list_the_same_keys(target, tmp_path: Path) -> None:
    env = runner_env(f"sqlite:///{tmp_path}/keys.db", None)
    out = run_cli(["submit", target.url("/ok"), target.url("/status/500")], env)  # embedded: checked before exit
    assert out.returncode == 0, out.stderr
    results = run_cli(["results", "--format", "json"], env)
    assert results.returncode == 0, results.stderr
    cli = [json.loads(line) for line in results.stdout.splitlines()]
    with serve(env, tmp_path / "serve.log") as server, server.client(server.token("keys")) as c:
        api = c.get("/api/v1/jobs").json()["jobs"]
        document = c.get("/openapi.json").json()["components"]["schemas"]["Job"]

    assert [job["id"] for job in cli] == [job["id"] for job in api] and len(cli) == 2
    assert [list(job) for job in cli] == [list(job) for job in api]  # the same keys, in the same order
    assert cli == api
    documented = list(document["properties"])
    assert set(RESULT_KEYS) <= set(documented)
    for job in api:  # the documented keys first, then the check's details
        assert list(job)[:len(documented)] == documented
