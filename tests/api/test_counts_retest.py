"""GET /api/v1/counts and POST /api/v1/jobs/{id}/retest, as a client calls them."""

from __future__ import annotations

from tests.api.conftest import Server
from tests.support.services import wait_until


def test_counts_match_the_filter_and_retest_makes_a_new_job(embedded_server: Server, target) -> None:  # noqa: ANN001
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
