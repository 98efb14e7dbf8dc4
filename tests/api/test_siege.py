"""``runner serve`` attacked as a client would (issue 24): one real server process on
PostgreSQL and RabbitMQ, small bounds so that each attack reaches them quickly."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Server, serve
from tests.support import services
from tests.support.services import ROOT, run_cli, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]

HEADER_TIMEOUT = 1.0
IDLE_TIMEOUT = 1.0
MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def siege(_pg_session_url: str, amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Jobs go to a queue no worker reads (no URL is ever checked)."""
    services.reset_postgres(_pg_session_url)
    queue = services.new_queue_name()
    tmp = tmp_path_factory.mktemp("siege")
    env = services.runner_env(_pg_session_url, amqp_url, queue, URLTESTER_API_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                              URLTESTER_API_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
                              URLTESTER_API_IDLE_TIMEOUT=str(IDLE_TIMEOUT), URLTESTER_API_MAX_EVENT_STREAMS="20")
    try:
        with serve(env, tmp / "serve.log") as server:
            yield server
    finally:
        services.delete_queues(amqp_url, queue)


@pytest.fixture(scope="module")
def token(siege: Server) -> str:
    return siege.token("siege")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fill_results(env: dict[str, str], n: int) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from synthetic import fill_synthetic

    from db import open_store

    store = open_store(env["URLTESTER_DATABASE_URL"], max_connections=1)
    try:
        fill_synthetic(store, n, batch="replay")
    finally:
        store.close()


def read_stream(server: Server, token: str, headers: dict[str, str], into: list[int], *, want: int | None = None,
                timeout: float = 60) -> None:
    """Event ids until the stream ends (or ``want`` of them)."""
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as c, \
            c.stream("GET", "/api/v1/events", headers=headers) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("id: "):
                into.append(int(line[4:]))
                if want is not None and len(into) >= want:
                    return


# ---------------------------------------------------------------------------- 1. metrics


def test_random_methods_without_a_token_add_no_metric_series(siege: Server, token: str) -> None:
    rng = random.Random(24)
    with httpx.Client(base_url=siege.base, timeout=10) as c:
        for i in range(300):
            method = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(8))
            assert c.request(method, f"/x{i}").status_code in (401, 405)
    with siege.client(token) as c:
        text = c.get("/metrics").text
    series = [line for line in text.splitlines() if line.startswith("urltester_http_requests_total{")]
    assert any('method="other"' in line for line in series)
    assert len(series) < 20, series
    assert len(text) < 100_000


# ---------------------------------------------------------------------------- 2. event streams


def test_streams_replaying_a_backlog_page_through_it_in_bounded_memory(siege: Server, token: str) -> None:
    fill_results(siege.env, 3000)
    before = rss_kib(siege.proc.pid)
    got: list[list[int]] = [[] for _ in range(10)]
    readers = [threading.Thread(target=read_stream, args=(siege, token, {"Last-Event-ID": "0"}, ids),
                                kwargs={"want": 3000}) for ids in got]
    peak = before
    for r in readers:
        r.start()
    while any(r.is_alive() for r in readers):
        peak = max(peak, rss_kib(siege.proc.pid))
        assert httpx.get(siege.base + "/healthz", timeout=5).status_code == 200
        readers[0].join(0.05)
    for ids in got:
        assert len(ids) == 3000 and ids == sorted(ids) and len(set(ids)) == 3000
    assert (peak - before) < 80_000, f"RSS grew {(peak - before) // 1024} MiB replaying 10 x 3000 results"


# ---------------------------------------------------------------------------- 3. connections


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(siege: Server) -> None:
    port = int(siege.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(HEADER_TIMEOUT + 5)
        started = time.monotonic()
        answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and b"request headers not complete" in answer
        assert s.recv(4096) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT + 2


def test_slowloris_headers_and_a_trickled_body_are_cut_off(siege: Server, token: str) -> None:
    port = int(siege.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:  # headers, a byte at a time, never finished
        s.settimeout(0.2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started, closed = time.monotonic(), False
        while time.monotonic() - started < HEADER_TIMEOUT + 5:
            try:
                s.sendall(b"X")
                if s.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - started < HEADER_TIMEOUT + 3
    with socket.create_connection(("127.0.0.1", port)) as s:  # a body that stops halfway
        s.settimeout(IDLE_TIMEOUT + 5)
        s.sendall(b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                  + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"urls\": [")
        started = time.monotonic()
        while s.recv(4096):
            pass
        assert time.monotonic() - started < IDLE_TIMEOUT + 3


def test_connections_past_the_limit_are_refused_with_503_and_one_log_line(siege: Server) -> None:
    port = int(siege.base.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS + 20)]
    try:
        refused = 0
        for s in socks[MAX_CONNECTIONS:]:
            s.settimeout(HEADER_TIMEOUT / 2)
            try:
                answer = s.recv(4096)
            except TimeoutError:
                continue
            if answer.startswith(b"HTTP/1.1 503"):
                assert b"retry-after: 1" in answer and b"too many open connections" in answer
                refused += 1
        assert refused >= 15
    finally:
        for s in socks:
            s.close()
    # The silent ones are closed by the header timeout; the server answers again.
    wait_until(lambda: httpx.get(siege.base + "/healthz", timeout=2).status_code == 200, 10, 0.1, "/healthz")
    log = siege.log_text()
    assert "Traceback" not in log
    assert log.count("connection refused:") <= 2  # rate-limited: once a minute


def test_healthz_answers_while_silent_connections_are_held(siege: Server) -> None:
    port = int(siege.base.rsplit(":", 1)[1])
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS // 2)]
    try:
        started = time.monotonic()
        assert httpx.get(siege.base + "/healthz", timeout=2).status_code == 200
        assert time.monotonic() - started < 1
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------- 4. revocation


def test_revoking_a_token_ends_its_open_streams_within_seconds(siege: Server) -> None:
    doomed = siege.token("doomed", "--read-only")
    ids: list[int] = []
    reader = threading.Thread(target=read_stream, args=(siege, doomed, {}, ids), daemon=True)
    reader.start()
    wait_until(lambda: 'urltester_api_event_streams 1.0' in siege.client(siege.token()).get("/metrics").text,
               10, 0.1, "the stream to open")
    assert run_cli(["token", "revoke", "doomed"], siege.env).returncode == 0
    revoked = time.monotonic()
    reader.join(10)
    assert not reader.is_alive(), "the stream outlived its token"
    assert time.monotonic() - revoked < 5
    with siege.client(doomed) as c:
        assert c.get("/api/v1/events").status_code == 401


# ---------------------------------------------------------------------------- 5. database away, races


def test_a_lost_database_answers_503_with_retry_after(siege: Server, _pg_session_url: str, amqp_url: str,
                                                      tmp_path) -> None:
    from urllib.parse import urlsplit

    from tests.faults.proxy import Proxy

    queue = services.new_queue_name()  # the module's database (not reset: the module's server uses it too)
    parts = urlsplit(_pg_session_url)
    with Proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        url = _pg_session_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
        env = services.runner_env(url, amqp_url, queue)
        try:
            with serve(env, tmp_path / "serve.log") as server:
                token = server.token("lost")
                with server.client(token) as c:
                    assert c.get("/api/v1/jobs").status_code == 200
                    with proxy.outage(None):  # while the three requests are made
                        proxy.cut()
                        for method, path, body in (("GET", "/api/v1/jobs", None), ("GET", "/api/v1/jobs/1", None),
                                                   ("POST", "/api/v1/jobs", {"url": "http://127.0.0.1:9/"})):
                            r = c.request(method, path, json=body)
                            assert r.status_code == 503, (path, r.status_code, r.text)
                            assert r.headers["retry-after"] == "5"
                            assert r.headers["x-content-type-options"] == "nosniff"
                    wait_until(lambda: c.get("/api/v1/jobs").status_code == 200, 30, 0.2, "the database back")
                assert "Traceback" not in server.log_text()
        finally:
            services.delete_queues(amqp_url, queue)


def test_concurrent_requests_with_one_idempotency_key_make_one_batch(siege: Server, token: str) -> None:
    def post(i: int) -> httpx.Response:
        with siege.client(token) as c:
            return c.post("/api/v1/jobs", json={"urls": [f"http://127.0.0.1:9/race/{i}"], "idempotency_key": "race-1"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(post, range(20)))
    assert [r.status_code for r in answers] == [202] * 20, [r.text for r in answers if r.status_code != 202]
    assert len({r.json()["batch"]["id"] for r in answers}) == 1
    assert sum(not r.json()["existed"] for r in answers) == 1


# ---------------------------------------------------------------------------- 6-8. bad input


def test_a_lone_surrogate_is_refused_before_anything_is_queued(siege: Server, token: str) -> None:
    body = b'{"urls": ["http://127.0.0.1:9/fine", "http://127.0.0.1:9/\\ud800"], "batch": "surrogate"}'
    with siege.client(token) as c:
        for path in ("/api/v1/jobs", "/add_job"):
            r = c.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, r.text
            assert "lone surrogate" in r.text and r.json()["detail"][0]["loc"][:2] == ["body", "urls"]
        assert c.get("/api/v1/jobs", params={"batch": "surrogate"}).json()["jobs"] == []


@pytest.mark.parametrize("batch", ["①", "¹", "٣", "²"])
def test_non_ascii_digits_are_a_batch_name_never_an_id(siege: Server, token: str, batch: str) -> None:
    """`?batch=①` answered 500 and `?batch=٣` listed batch 3; Schemathesis then found that a
    422 for them refused what the document allows, and `/changes?against=²` answered 500."""
    with siege.client(token) as c:
        r = c.get("/api/v1/jobs", params={"batch": batch})
        assert r.status_code == 200 and r.json()["jobs"] == [], r.text
        named = c.post("/api/v1/jobs", json={"urls": [f"http://127.0.0.1:9/named-{ord(batch[0])}"], "batch": batch})
        job = named.json()["jobs"][0]["id"]
        assert [j["id"] for j in c.get("/api/v1/jobs", params={"batch": batch}).json()["jobs"]] == [job]
        for params in ({"batch": batch}, {"batch": "/@:", "against": batch}):
            r = c.get("/api/v1/changes", params=params)
            assert r.status_code in (200, 404), (params, r.text)
        assert c.get("/api/v1/urls", params={"batch": batch}).status_code == 200


def test_a_time_offset_postgresql_does_not_take_is_read_not_500(siege: Server, token: str) -> None:
    """Schemathesis found since=...T12:40-23:11 answered 500 (Python takes offsets to ±23:59,
    PostgreSQL to ±15:59): the time is read in UTC."""
    with siege.client(token) as c:
        job = c.post("/api/v1/jobs", json={"url": "http://127.0.0.1:9/offset"}).json()["jobs"][0]["id"]
        for since in ("2020-01-01T12:40-23:11", "2020-01-01T12:40+23:59"):
            r = c.get("/api/v1/jobs", params={"since": since})
            assert r.status_code == 200, (since, r.text)
            assert job in [j["id"] for j in r.json()["jobs"]]
            assert c.get("/api/v1/urls", params={"changed_since": since}).status_code == 200
            assert c.get("/api/v1/changes", params={"since": since}).status_code == 200
        r = c.get("/api/v1/urls", params={"changed_since": "0001-01-01T00:00+05:00"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "changed_since"]


def test_a_last_event_id_that_is_not_ascii_digits_is_422(siege: Server, token: str) -> None:
    with siege.client(token) as c:
        for value in (b"\xb9", "٣".encode(), b"-1", b"1e3"):
            r = c.get("/api/v1/events", headers={"Last-Event-ID": value})
            assert r.status_code == 422, (value, r.text)
            assert r.headers["content-security-policy"].startswith("default-src 'none'")


def test_an_id_in_the_path_is_ascii_digits_only(siege: Server, token: str) -> None:
    """Schemathesis found /api/v1/batches/6%09 answered as batch 6."""
    with siege.client(token) as c:
        batch = c.post("/api/v1/jobs", json={"url": "http://127.0.0.1:9/id"}).json()["batch"]["id"]
        assert c.get(f"/api/v1/batches/{batch}").status_code == 200
        for tail in ("%09", "%20", "٣", "¹"):
            assert c.get(f"/api/v1/batches/{batch}{tail}").status_code == 404
            assert c.get(f"/api/v1/jobs/1{tail}").status_code == 404


def test_json_nested_990_deep_is_422_everywhere(siege: Server, token: str) -> None:
    deep = "[" * 990 + "]" * 990
    deeper = "[" * 100_000 + "]" * 100_000
    with siege.client(token) as c:
        for path in ("/add_job", "/api/v1/jobs"):
            for text in (deep, deeper, '{"url": "http://127.0.0.1:9/", "options": ' + '{"a": ' * 990 + "1" + "}" * 991):
                r = c.post(path, content=text, headers={"content-type": "application/json"})
                assert r.status_code == 422, (path, r.status_code, r.text[:200])
    assert "Traceback" not in siege.log_text()


# ---------------------------------------------------------------------------- 9, 11. URLs


def test_a_backslash_in_the_host_part_is_refused(siege: Server, token: str) -> None:
    with siege.client(token) as c:
        r = c.post("/api/v1/jobs", json={"urls": ["http://127.0.0.1:18090\\@169.254.169.254/"]})
        assert r.status_code == 202 and r.json()["jobs"] == []
        assert "backslash" in r.json()["rejected"][0]["reason"]


def test_invalid_punycode_is_refused(siege: Server, token: str) -> None:
    with siege.client(token) as c:
        r = c.post("/api/v1/jobs", json={"urls": ["http://xn--zz.example/", "http://xn--abc.example/",
                                                  "http://xn--fa-hia.example/"]})
        assert [j["url"] for j in r.json()["jobs"]] == ["http://xn--fa-hia.example/"]
        assert all("not valid punycode" in x["reason"] for x in r.json()["rejected"])


def test_a_password_in_a_url_in_the_query_is_masked_and_the_access_log_has_no_query(siege: Server, token: str) -> None:
    with siege.client(token) as c:
        r = c.post("/api/v1/jobs", json={"url": "http://127.0.0.1:9/go?to=http://u:s3cret-pw@127.0.0.1:9/x"})
        job = r.json()["jobs"][0]
        assert "s3cret-pw" not in r.text and job["url"] == "http://127.0.0.1:9/go?to=http://u:***@127.0.0.1:9/x"
        assert "s3cret-pw" not in c.get(f"/api/v1/jobs/{job['id']}").text
        assert c.get("/api/v1/jobs", params={"text": "s3cret-pw2"}).status_code == 200
    log = siege.log_text()
    assert "s3cret-pw" not in log and '"GET /api/v1/jobs HTTP/1.1" 200' in log


# ---------------------------------------------------------------------------- issue 23: the bind


def test_a_taken_port_is_one_line_and_exit_3(siege: Server) -> None:
    port = int(siege.base.rsplit(":", 1)[1])
    out = subprocess.run([sys.executable, "-m", "runner", "serve", "--port", str(port)], env=siege.env, cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], lines
    assert "serving on" not in out.stderr
    assert f"serving on http://127.0.0.1:{port}/" in siege.log_text()  # the one that did bind says so


def test_a_low_descriptor_limit_lowers_the_connection_limit_instead_of_failing_accepts(siege: Server, tmp_path) -> None:
    """20,000 silent connections used to reach the file limit and write a traceback per
    failed accept; with LimitNOFILE=300 the server takes 44 connections and refuses the rest."""
    import resource


    port = services.free_port()
    log = tmp_path / "serve.log"
    env = {**siege.env, "URLTESTER_API_MAX_CONNECTIONS": "10000"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--port", str(port)], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300)))
        try:
            wait_until(lambda: _answers(port), 30, 0.1, "runner serve with 300 descriptors")
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(150)]
            try:
                refused = 0
                for s in socks:
                    s.settimeout(0.05)
                    try:
                        refused += s.recv(4096).startswith(b"HTTP/1.1 503")
                    except TimeoutError:
                        pass
                assert refused >= 100
            finally:
                for s in socks:
                    s.close()
            wait_until(lambda: _answers(port), 10, 0.1, "/healthz again")
        finally:
            proc.terminate()
            proc.wait(20)
    text = log.read_text()
    assert "at most 44 connections per process: the descriptor limit is 300" in text
    assert "Traceback" not in text and "Too many open files" not in text


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
