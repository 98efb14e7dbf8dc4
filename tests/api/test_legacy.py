"""The old system's clients, unchanged: ``/api/add_job`` and ``/api/get_jobs`` through the
nginx block of docs/api.md (run as written, its placeholders filled in) in front of a
``runner serve`` process, spoken to as the old page spoke: no token of its own."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.api.conftest import Server, serve
from tests.conformance import servers
from tests.support.services import ROOT, free_port, run_cli, runner_env, wait_until
from tests.support.targets import TargetServer

pytestmark = pytest.mark.e2e

ZONE = "Asia/Kathmandu"  # +05:45: never the machine's zone by accident
OLD_PAGE = "<!doctype html><title>old urltester</title><p>Protocol defaults to HTTP</p>"


def docs_snippet() -> str:
    """The nginx block of docs/api.md that serves the old page (the one naming /api/add_job)."""
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, re.S)
    found = [b for b in blocks if "location = /api/add_job" in b]
    assert len(found) == 1, "docs/api.md should hold one nginx block for the old page"
    return found[0]


@contextmanager
def old_site(api_port: int, write_token: str, read_token: str) -> Iterator[str]:
    """nginx running the docs' block: the old page's files and its two API paths."""
    binary = servers.require("nginx")
    work = Path(tempfile.mkdtemp(prefix="urltester-old-page-"))
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    (work / "www").mkdir()
    (work / "www" / "index.html").write_text(OLD_PAGE)
    port = free_port()
    block = (docs_snippet().replace("listen 80;", f"listen 127.0.0.1:{port};")
             .replace("/srv/old-page", str(work / "www")).replace("127.0.0.1:8080", f"127.0.0.1:{api_port}")
             .replace("WRITE_TOKEN", write_token).replace("READ_ONLY_TOKEN", read_token))
    user = "user www-data;" if os.geteuid() == 0 else ""
    (work / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    types {{ text/html html; }}
{block}
}}
""")
    for path in [work, *work.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    proc = servers._popen([binary, "-p", str(work), "-c", str(work / "nginx.conf")], work / "nginx.out")
    running = servers.Running("nginx", proc, {"http": port})
    try:
        servers.wait_port(port, proc, "nginx", work / "nginx-error.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        running.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("legacy")
    env = runner_env(f"sqlite:///{tmp}/api.db", None, URLTESTER_TIMEZONE=ZONE)
    with serve(env, tmp / "serve.log") as srv:
        yield srv


def test_the_old_page_adds_and_lists_through_nginx_as_it_did(server: Server, target: TargetServer) -> None:
    write, read = server.token("old-page"), server.token("old-page-read", "--read-only")
    api_port = int(server.base.rsplit(":", 1)[1])
    hostport = f"127.0.0.1:{target.server_address[1]}"
    with old_site(api_port, write, read) as site, httpx.Client(base_url=site, timeout=30) as old:
        assert old.get("/").text == OLD_PAGE
        sent = [f"{hostport}/ok", f"http://{hostport}/status/404", "http://127.0.0.1:9/"]
        for url in sent:
            r = old.post("/api/add_job", json={"url": url})
            assert (r.status_code, r.content) == (200, b"")

        def listed() -> list[dict]:
            r = old.get("/api/get_jobs", params={"limit": 10, "offset": 0})
            assert r.status_code == 200
            return r.json()

        wait_until(lambda: len(listed()) == 3, 60, 0.2, "three done jobs in the old list")
        jobs = listed()
        # Newest first; the scheme-less address was checked over http://, as the old page said.
        assert [j["url"] for j in jobs] == ["http://127.0.0.1:9/", f"http://{hostport}/status/404",
                                            f"http://{hostport}/ok"]
        assert jobs[1]["result"] == 404 and jobs[2]["result"] == 200
        assert isinstance(jobs[0]["result"], str) and "refused" in jobs[0]["result"]
        assert set(jobs[0]) == {"time", "url", "result"}
        # time: submitted, "YYYY-MM-DD HH:MM" in URLTESTER_TIMEZONE.
        with server.client(read) as api:
            new = api.get("/api/v1/jobs", params={"limit": 1}).json()["jobs"][0]
        expected = datetime.fromisoformat(new["submitted_at"]).astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M")
        assert jobs[0]["time"] == expected

        # Paging by limit and offset; anything not a whole number is an empty list.
        assert old.get("/api/get_jobs?limit=1&offset=1").json() == [jobs[1]]
        assert old.get("/api/get_jobs?limit=2&offset=2").json() == [jobs[2]]
        assert old.get("/api/get_jobs?offset=3").json() == []
        assert old.get("/api/get_jobs").json() == jobs  # defaults: limit 10, offset 0
        assert old.get("/api/get_jobs?limit=2&_=1733400000").json() == jobs[:2]  # a cache-buster is ignored
        for query in ("limit=ten", "offset=x", "limit=-1", "limit=1.5&offset=0", "limit=&offset="):
            r = old.get(f"/api/get_jobs?{query}")
            assert (r.status_code, r.json()) == (200, []), query

        # Other methods: 405; a body that is not JSON, or JSON without a url: 422.
        assert old.get("/api/add_job").status_code == 405
        assert old.put("/api/add_job", json={"url": "x.example"}).status_code == 405
        assert old.post("/api/get_jobs").status_code == 405
        assert old.delete("/api/get_jobs").status_code == 405
        r = old.post("/api/add_job", content=b"url=http://x.example", headers={"content-type": "text/plain"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
        for body in ({}, {"link": "x.example"}, [], {"url": 5}):
            r = old.post("/api/add_job", json=body)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "url"], body
        r = old.post("/api/add_job", json={"url": "ftp://x.example/"})
        assert r.status_code == 422 and "url" in r.json()["detail"][0]["loc"]
        # The rest of the API is not open through this proxy.
        assert old.get("/api/v1/jobs").status_code == 404
        assert len(listed()) == 3  # nothing the refusals sent was added

    # A read-only token in the add_job line: the page lists but cannot add.
    with old_site(api_port, read, read) as site, httpx.Client(base_url=site, timeout=30) as old:
        r = old.post("/api/add_job", json={"url": f"{hostport}/ok"})
        assert r.status_code == 403
        assert len(old.get("/api/get_jobs").json()) == 3


def test_without_the_proxy_a_token_is_still_needed(server: Server) -> None:
    assert httpx.post(server.base + "/api/add_job", json={"url": "x.example"}).status_code == 401
    assert httpx.get(server.base + "/api/get_jobs").status_code == 401


def test_an_unknown_time_zone_stops_serve_with_one_line(tmp_path: Path) -> None:
    env = runner_env(f"sqlite:///{tmp_path}/api.db", None, URLTESTER_TIMEZONE="Mars/Olympus_Mons")
    out = run_cli(["serve", "--port", str(free_port())], env, timeout=60)
    assert out.returncode == 2
    assert "Mars/Olympus_Mons" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_an_empty_add_job_is_422_naming_the_missing_field(server: Server) -> None:
    with server.client(server.token()) as c:
        for kw in ({"data": {}}, {"json": {}}, {"json": {"urls": []}}, {"json": {"url": ""}},
                   {"content": b"", "headers": {"content-type": "application/x-www-form-urlencoded"}}):
            r = c.post("/add_job", **kw)  # type: ignore[arg-type]
            assert r.status_code == 422, kw
            assert r.json()["detail"][0]["loc"] == ["body", "url"], kw
        r = c.post("/api/v1/jobs", json={"urls": []})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "urls"]
