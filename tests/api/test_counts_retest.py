"""GET /api/v1/counts and POST /api/v1/jobs/{id}/retest, as a client calls them."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from tests.api.conftest import Server, serve
from tests.support.services import run_cli, runner_env, wait_until


def test_counts_match_the_filter_and_retest_makes_a_new_job(embedded_server: Server, target) -> None:
    with embedded_server.client(embedded_server.token()) as c:
        base = c.get("/api/v1/counts").json()
        added = c.post("/api/v1/jobs", json={"urls": [target.url("/ok?counts=1"), target.url("/status/503?counts=2")],
                                             "options": {"retries": 1}})
        assert added.status_code == 202, added.text
        first, second = (j["id"] for j in added.json()["jobs"])
        wait_until(lambda: c.get("/api/v1/counts").json()["done"] == base["done"] + 2, 30, message="two checked")
        counts = c.get("/api/v1/counts", params={"text": "counts="}).json()
        assert counts["matching"] == 2 and counts["done"] == base["done"] + 2
        assert c.get("/api/v1/counts", params={"text": "counts=", "failed": "true"}).json()["matching"] == 1
        again = c.post(f"/api/v1/jobs/{second}/retest")
        assert again.status_code == 202, again.text
        [job] = again.json()["jobs"]
        assert job["id"] > second and job["url"] == target.url("/status/503?counts=2")
        wait_until(lambda: c.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "done", 30, message="the re-test")
        redone = c.get(f"/api/v1/jobs/{job['id']}").json()
        assert redone["attempts"] == 1  # its options came along (retries 1)
        assert c.get(f"/api/v1/jobs/{first}").json()["state"] == "done"  # the old ones stay
        assert c.post("/api/v1/jobs/999999/retest").status_code == 404
        assert c.get("/api/v1/counts", params={"state": "nope"}).status_code == 422
    with embedded_server.client(embedded_server.token(None, "--read-only")) as viewer:
        assert viewer.get("/api/v1/counts").status_code == 200
        refused = viewer.post(f"/api/v1/jobs/{first}/retest")
        assert refused.status_code == 403 and "read-only" in refused.json()["detail"]


@pytest.mark.rabbitmq
def test_a_broker_that_refuses_the_login_is_a_503_in_one_line(tmp_path, amqp_url) -> None:
    parts = urlsplit(amqp_url)
    bad = parts._replace(netloc=f"guest:wrong-pw@{parts.hostname}:{parts.port or 5672}").geturl()
    env = runner_env(f"sqlite:///{tmp_path}/api.db", bad, "urltester-refused")
    with serve(env, tmp_path / "serve.log") as server, server.client(server.token()) as c:
        answer = c.post("/api/v1/jobs", json={"urls": ["http://127.0.0.1:9/refused"]})
        assert answer.status_code == 503, answer.text
        assert "refused the login" in answer.json()["detail"] and "wrong-pw" not in answer.text
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "wrong-pw" not in log
    listed = run_cli(["results", "--format", "json"], runner_env(f"sqlite:///{tmp_path}/api.db", None))
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["state"] == "queued" and "refused the login" in row["publish_error"]  # kept, for requeue
