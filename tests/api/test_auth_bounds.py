"""Auth, bounds and bad input, over real HTTP against a ``runner serve`` process."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import Server
from tests.support.services import run_cli, wait_until

pytestmark = pytest.mark.e2e


def test_no_token_wrong_token_and_revoked_token_get_the_same_401(embedded_server: Server) -> None:
    good = embedded_server.token("revokable")
    answers = []
    for headers in ({}, {"Authorization": "Bearer ut_wrong"}, {"Authorization": "Basic Y2k6Y2k="},
                    {"Authorization": f"Bearer {good}x"}):
        r = httpx.get(embedded_server.base + "/api/v1/jobs", headers=headers)
        answers.append((r.status_code, r.text, r.headers.get("www-authenticate")))
    # A malformed body and an unknown path get 401 too: nothing is looked at before the token.
    r = httpx.post(embedded_server.base + "/api/v1/jobs", content=b"{bad", headers={"content-type": "application/json"})
    answers.append((r.status_code, r.text, r.headers.get("www-authenticate")))
    answers.append((lambda r: (r.status_code, r.text, r.headers.get("www-authenticate")))(
        httpx.get(embedded_server.base + "/api/v1/nothing-here")))
    assert set(answers) == {(401, '{"detail": "unauthorized"}', "Bearer")}

    with embedded_server.client(good) as c:
        assert c.get("/api/v1/jobs").status_code == 200
    assert run_cli(["token", "revoke", "revokable"], embedded_server.env).returncode == 0
    with embedded_server.client(good) as c:
        assert c.get("/api/v1/jobs").status_code == 401
    assert httpx.get(embedded_server.base + "/healthz").json() == {"detail": "ok"}


def test_tokens_are_stored_hashed_and_listed_without_the_secret(embedded_server: Server) -> None:
    token = embedded_server.token("deploy", "--read-only")
    listing = run_cli(["token", "list"], embedded_server.env)
    assert "deploy" in listing.stdout and "read-only" in listing.stdout and token not in listing.stdout
    assert token.encode() not in embedded_server.db.read_bytes()
    again = run_cli(["token", "create", "deploy"], embedded_server.env)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr
    bad = run_cli(["token", "create", "has space"], embedded_server.env)
    assert bad.returncode == 2 and "token name" in bad.stderr


def test_a_read_only_token_reads_but_cannot_add(embedded_server: Server, target) -> None:
    with embedded_server.client(embedded_server.token("viewer", "--read-only")) as c:
        r = c.post("/api/v1/jobs", json={"url": target.url("/ok")})
        assert r.status_code == 403 and "read-only" in r.json()["detail"]
        r = c.post("/add_job", data={"url": target.url("/ok")})
        assert r.status_code == 403
        assert c.get("/api/v1/jobs").status_code == 200


def test_bounds_say_the_limit(embedded_server: Server, target) -> None:
    with embedded_server.client(embedded_server.token()) as c:
        r = c.post("/api/v1/jobs", json={"urls": ["a.example"] * 10_001})
        assert r.status_code == 413 and "at most 10000 URLs" in r.json()["detail"]
        # The server was started with URLTESTER_API_MAX_BODY=2000000.
        big = json.dumps({"urls": ["https://a.example/" + "x" * 1000] * 2100})
        r = c.post("/api/v1/jobs", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "2000000 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: the bound is counted as it arrives
            for _ in range(30):
                yield b" " * 100_000

        r = c.post("/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.get("/api/v1/jobs", params={"limit": 1001})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
        assert c.get("/api/v1/jobs", params={"limit": 1000}).status_code == 200
        # Two event streams allowed (URLTESTER_API_MAX_EVENT_STREAMS=2): the third is 503.
        with c.stream("GET", "/api/v1/events") as one, c.stream("GET", "/api/v1/events") as two:
            assert one.status_code == two.status_code == 200
            third = c.get("/api/v1/events")
            assert third.status_code == 503 and "limit 2" in third.json()["detail"]


@pytest.mark.parametrize(("body", "loc"), [
    ({}, ["body"]),
    ({"urls": "https://a.example/"}, ["body", "urls"]),
    ({"url": None}, ["body", "url"]),
    ({"urls": ["a.example"], "options": {"method": "PUT"}}, ["body", "options", "method"]),
    ({"urls": ["a.example"], "options": {"colour": "red"}}, ["body", "options", "colour"]),
    ({"urls": ["a.example"], "batch": "x" * 201}, ["body", "batch"]),
    ({"urls": ["a.example"], "surprise": 1}, ["body", "surprise"]),
    ({"urls": ["a.example"], "options": {"body_contains": "a\x00b"}}, ["body", "options"]),
])
def test_a_malformed_body_is_422_naming_the_field(embedded_server: Server, body, loc) -> None:
    with embedded_server.client(embedded_server.token()) as c:
        r = c.post("/api/v1/jobs", json=body)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert any(d["loc"][: len(loc)] == loc for d in detail), detail
        assert all(set(d) == {"loc", "msg", "type"} for d in detail)  # never the input echoed


def test_bad_queries_are_422_and_unknown_ids_404(embedded_server: Server) -> None:
    with embedded_server.client(embedded_server.token()) as c:
        for params, field in (({"cursor": "zzz"}, "cursor"), ({"state": "lost"}, "state"),
                              ({"since": "yesterday"}, "since"), ({"since": "99999999d"}, "since"),
                              ({"batch": "a\x00"}, "batch")):
            r = c.get("/api/v1/jobs", params=params)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", field], (params, r.text)
        # A parameter given twice is not read as its last value alone (every one takes one value).
        for path in ("/api/v1/jobs?batch=a&batch=b", "/api/v1/urls?state=ok&state=failing"):
            r = c.get(path)
            assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "given 2 times: give it once", r.text
        assert c.get("/api/v1/jobs/12345").status_code == 404
        assert c.get("/api/v1/jobs/99999999999999999999").status_code == 422
        assert c.get("/api/v1/batches/7").json() == {"detail": "no batch 7"}
        r = c.get("/api/v1/events", headers={"Last-Event-ID": "abc"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["header", "last-event-id"]
        r = c.post("/add_job", content=b"<x/>", headers={"content-type": "application/xml"})
        assert r.status_code == 415


def test_rejected_urls_are_reported_and_passwords_never_answered_or_logged(embedded_server: Server, target) -> None:
    token = embedded_server.token()
    secret_url = target.url("/ok").replace("http://", "http://user:s3cret@")
    with embedded_server.client(token) as c:
        r = c.post("/api/v1/jobs", json={"urls": [secret_url, "ftp://a.example/", "not a url"], "batch": "mixed"})
        assert r.status_code == 202
        body = r.json()
        assert [j["url"] for j in body["jobs"]] == [secret_url.replace("s3cret", "***")]
        assert [x["input"] for x in body["rejected"]] == ["ftp://a.example/", "not a url"]
        assert all(x["reason"] for x in body["rejected"])
        job_id = body["jobs"][0]["id"]
        wait_until(lambda: c.get(f"/api/v1/jobs/{job_id}").json()["state"] == "done", 30, message="the check")
        everything = c.get("/api/v1/jobs", headers={"Accept": "application/x-ndjson"}).text + c.get(
            f"/api/v1/jobs/{job_id}").text + c.get("/get_jobs").text
    assert "s3cret" not in everything
    log = embedded_server.log_text()
    assert "s3cret" not in log and token not in log and "Traceback" not in log


def test_idempotency_key_answers_the_first_requests_jobs(embedded_server: Server, target) -> None:
    with embedded_server.client(embedded_server.token()) as c:
        body = {"urls": [target.url("/ok?a=1"), target.url("/ok?a=2")], "idempotency_key": "nightly-1"}
        first = c.post("/api/v1/jobs", json=body).json()
        again = c.post("/api/v1/jobs", json=body).json()
        assert not first["existed"] and again["existed"]
        assert again["jobs"] == first["jobs"] and again["batch"] == first["batch"]


def test_old_names_add_job_form_and_get_jobs(embedded_server: Server, target) -> None:
    with embedded_server.client(embedded_server.token()) as c:
        r = c.post("/add_job", data={"url": target.url("/ok?old=1")})
        assert r.status_code == 202
        job = r.json()["jobs"][0]
        r = c.post("/add_job", json={"url": target.url("/ok?old=2")})
        assert r.status_code == 202
        second = r.json()["jobs"][0]
        assert c.post("/add_job", data={}).status_code == 422

        def done_ids() -> list[int]:
            return [j["id"] for j in c.get("/get_jobs", params={"text": "old="}).json()["jobs"]]

        wait_until(lambda: len(done_ids()) == 2, 30, message="two done jobs")
        assert done_ids() == [second["id"], job["id"]]  # newest first
        assert {j["state"] for j in c.get("/get_jobs").json()["jobs"]} == {"done"}


def test_cors_is_off_unless_configured(embedded_server: Server) -> None:
    r = httpx.options(embedded_server.base + "/api/v1/jobs", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    with embedded_server.client(embedded_server.token()) as c:
        r = c.get("/api/v1/jobs", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_the_page_is_served_with_a_csp_that_forbids_inline_script(embedded_server: Server) -> None:
    r = httpx.get(embedded_server.base + "/")
    assert r.status_code == 200 and "<script src=\"/static/app.js\"" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    js = httpx.get(embedded_server.base + "/static/app.js").text
    assert "innerHTML" not in js.replace("never innerHTML", "")


def test_metrics_count_requests_by_route(embedded_server: Server) -> None:
    with embedded_server.client(embedded_server.token()) as c:
        c.get("/api/v1/jobs/5")
        text = c.get("/metrics").text
    assert 'urltester_http_requests_total{method="GET",route="/api/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert "urltester_http_request_duration_seconds_bucket" in text


def test_several_server_processes_share_the_port(tmp_path) -> None:
    from tests.api.conftest import serve
    from tests.support.services import runner_env

    env = runner_env(f"sqlite:///{tmp_path}/w.db", None)
    with serve(env, tmp_path / "serve.log", "--workers", "2") as server, server.client(server.token("w")) as c:
        assert {c.get("/api/v1/jobs").status_code for _ in range(10)} == {200}
    assert server.log_text().count("Started server process") == 2


def test_the_shared_port_answers_without_nagles_delay() -> None:
    """``--workers N`` listens on a socket of our own: uvicorn's leaves Nagle on for every
    accepted connection (each keep-alive answer after the first waited ~40 ms for the
    client's delayed ACK). Asserted on what asyncio does with the socket, as uvicorn's
    workers do; uvicorn's own socket is checked too, so an upgrade that fixes it shows."""
    import asyncio
    import socket

    import uvicorn

    from runner.api.server import listening_socket

    def nodelay_of_accepted(sock: socket.socket) -> int:
        async def main() -> int:
            accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

            def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                writer.close()

            server = await asyncio.start_server(on_client, sock=sock)
            _, writer = await asyncio.open_connection(*sock.getsockname())
            try:
                return await asyncio.wait_for(accepted, 5)
            finally:
                writer.close()
                server.close()
                await server.wait_closed()
        return asyncio.run(main())

    assert nodelay_of_accepted(listening_socket("127.0.0.1", 0)) != 0
    theirs = uvicorn.Config("x:y", host="127.0.0.1", port=0).bind_socket()
    assert nodelay_of_accepted(theirs) == 0, "uvicorn's bind_socket keeps TCP_NODELAY now: listening_socket can go"
