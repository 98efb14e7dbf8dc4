"""A URL holding a password, opened the way the page does (issue 22), on real PostgreSQL:
the page knows the URL only masked (``http://user:***@…``), which names no URL, so it opens
the story by the URL's id from ``/api/v1/urls`` (``id``) or ``/api/v1/changes``
(``url_id``). The password shows nowhere in any answer; ``url=`` works as before; an
unknown id is 404, a malformed one 422, and exactly one of ``url`` and ``id`` is taken."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import serve
from tests.support.services import run_cli, runner_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_the_history_of_a_url_holding_a_password_opens_by_id(pg_url, target, tmp_path) -> None:
    env = runner_env(pg_url, None)  # embedded: checked before `submit` exits, stored in PostgreSQL
    secret = target.url("/switch?key=pw").replace("http://", "http://user:secret@")
    masked = secret.replace(":secret@", ":***@")
    target.switch["pw"] = 200
    assert run_cli(["submit", secret, "--batch", "one"], env).returncode == 0
    target.switch["pw"] = 500
    assert run_cli(["submit", secret, "--batch", "two"], env).returncode == 0

    with serve(env, tmp_path / "serve.log") as server, server.client(server.token("reader", "--read-only")) as c:
        rows = c.get("/api/v1/urls").json()["urls"]
        assert [r["url"] for r in rows] == [masked] and isinstance(rows[0]["id"], int)
        # the masked URL names no URL: what the page asked before, and why it asks by id now
        assert c.get("/api/v1/urls/history", params={"url": masked}).status_code == 404

        story = c.get("/api/v1/urls/history", params={"id": rows[0]["id"], "limit": 200})
        assert story.status_code == 200, story.text
        body = story.json()
        assert body["url"] == masked and body["id"] == rows[0]["id"] and body["state"] == "failing"
        assert [(ch["from"], ch["to"]) for ch in body["changes"]] == [("ok", "failing"), (None, "ok")]
        assert [p["status_code"] for p in body["recent"]] == [500, 200]
        # the same story as by its URL (as submitted, password and all), and as the CLI's
        by_url = c.get("/api/v1/urls/history", params={"url": secret, "limit": 200}).json()
        assert by_url == body
        assert json.loads(run_cli(["history", secret, "--limit", "200", "--format", "json"], env).stdout) == body

        changes = c.get("/api/v1/changes", params={"batch": "two"}).json()["changes"]
        assert [(d["url"], d["change"], d["url_id"]) for d in changes] == [(masked, "new_failure", rows[0]["id"])]
        assert c.get("/api/v1/urls/history", params={"id": changes[0]["url_id"]}).json()["url"] == masked

        answers = [story.text, c.get("/api/v1/urls").text, c.get("/api/v1/changes", params={"batch": "two"}).text]
        assert all("secret" not in a for a in answers)

        for params, status, named in [
            ({"id": rows[0]["id"] + 1000}, 404, "id"),
            ({"id": "seven"}, 422, "id"),
            ({"id": "0"}, 422, "id"),
            ({"id": str(2**63)}, 422, "id"),
            ({}, 422, "url"),
            ({"id": rows[0]["id"], "url": secret}, 422, "id"),
        ]:
            r = c.get("/api/v1/urls/history", params=params)
            assert r.status_code == status and r.headers["content-type"].startswith("application/"), (params, r.text)
            assert named in json.dumps(r.json()["detail"]) and "Traceback" not in r.text, (params, r.text)
