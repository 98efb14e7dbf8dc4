"""The URL views' keys are declared once (runner/jobs/history.py): `runner urls`, `runner
history` and `runner changes --format json` and the API list the same keys, in the same
order, and the API's document names exactly them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.api.conftest import serve
from tests.support.services import run_cli, runner_env

pytestmark = pytest.mark.e2e


def test_cli_json_and_the_api_list_the_same_url_keys(target, tmp_path: Path) -> None:
    env = runner_env(f"sqlite:///{tmp_path}/keys.db", None)
    urls = [target.url("/ok"), target.url("/status/500")]
    assert run_cli(["submit", *urls, "--batch", "keys"], env).returncode == 0  # embedded: checked before exit
    cli_urls = [json.loads(line) for line in run_cli(["urls", "--format", "json"], env).stdout.splitlines()]
    cli_story = json.loads(run_cli(["history", urls[1], "--format", "json"], env).stdout)
    cli_changes = [json.loads(line) for line in
                   run_cli(["changes", "--batch", "keys", "--format", "json"], env).stdout.splitlines()]
    with serve(env, tmp_path / "serve.log") as server, server.client(server.token("keys")) as c:
        api_urls = c.get("/api/v1/urls").json()["urls"]
        api_story = c.get("/api/v1/urls/history", params={"url": urls[1]}).json()
        api_changes = c.get("/api/v1/changes", params={"batch": "keys"}).json()["changes"]
        schemas = c.get("/openapi.json").json()["components"]["schemas"]

    assert len(cli_urls) == 2 and [list(u) for u in cli_urls] == [list(u) for u in api_urls] and cli_urls == api_urls
    assert list(cli_story) == list(api_story) and cli_story == api_story
    assert [list(d) for d in cli_changes] == [list(d) for d in api_changes] and len(api_changes) == 2

    def documented(name: str) -> list[str]:
        return list(schemas[name]["properties"])

    assert documented("UrlOut") == list(api_urls[0])
    assert documented("LastCheck") == list(api_urls[0]["last"])
    assert documented("Latency") == list(api_urls[0]["latency_ms"])
    assert documented("HistoryOut") == list(api_story)
    assert documented("UrlChangeOut") == list(api_story["changes"][0])
    assert documented("PointOut") == list(api_story["recent"][0])
    assert documented("DiffOut") == list(api_changes[0])
    assert documented("CheckSide") == list(api_changes[0]["after"])
