"""The API on real PostgreSQL and RabbitMQ: ``runner serve`` and ``runner start`` as
processes, a real HTTP client, the same jobs as ``runner results``."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import httpx
import pytest

from tests.api.conftest import serve
from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]


@pytest.fixture
def env(pg_url: str, amqp_url: str, queue_name: str) -> dict[str, str]:
    return runner_env(pg_url, amqp_url, queue_name)


def read_events(client: httpx.Client, headers: dict[str, str], want: int, into: list[dict], ready: threading.Event,
                timeout: float = 90) -> None:
    """Collect ``want`` result events (id and job) from /api/v1/events (its ``change`` events
    are another test's: tests/api/test_urls_api.py); ``ready`` is set once the stream has
    read its starting point (its first line, ``retry:``, comes after it)."""
    deadline = time.monotonic() + timeout
    with client.stream("GET", "/api/v1/events", headers=headers, timeout=timeout) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event: dict = {}
        for line in r.iter_lines():
            if line.startswith("retry: "):
                ready.set()
            elif line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["kind"] = line[7:]
            elif line.startswith("data: ") and event.get("kind") == "result":
                event["job"] = json.loads(line[6:])
            elif line == "" and "job" in event:
                into.append({k: v for k, v in event.items() if k != "kind"})
                event = {}
                if len(into) >= want or time.monotonic() > deadline:
                    return


def test_a_thousand_urls_in_through_the_api_and_back_as_runner_results_sees_them(env, target, tmp_path) -> None:
    urls = [target.url(f"/ok?n={i}") for i in range(990)] + [target.url(f"/status/500?n={i}") for i in range(10)]
    with serve(env, tmp_path / "serve.log") as server, \
            worker(env, "--processes", "1", "--concurrency", "32", log_path=tmp_path / "worker.log"):
        token = server.token("ci")
        with server.client(token) as c:
            events: list[dict] = []
            ready = threading.Event()
            reader = threading.Thread(target=read_events, args=(server.client(token), {}, 1000, events, ready))
            reader.start()
            assert ready.wait(30)
            r = c.post("/api/v1/jobs", json={"urls": urls, "batch": "api-1000", "options": {"expect_status": "200"}})
            assert r.status_code == 202, r.text
            answer = r.json()
            assert len(answer["jobs"]) == 1000 and answer["rejected"] == []
            assert [j["url"] for j in answer["jobs"]] == urls
            batch_id = answer["batch"]["id"]
            wait_until(lambda: c.get(f"/api/v1/batches/{batch_id}").json()["done"] == 1000, 120, 0.5, "1,000 results")
            summary = c.get(f"/api/v1/batches/{batch_id}").json()
            assert (summary["ok"], summary["failed"], summary["by_outcome"]) == (990, 10, {"ok": 990, "http_error": 10})

            pages, cursor = [], None
            while True:
                page = c.get("/api/v1/jobs", params={"limit": 150, **({"cursor": cursor} if cursor else {})}).json()
                pages.extend(page["jobs"])
                cursor = page["next"]
                if cursor is None:
                    break
            ndjson = [json.loads(line) for line in c.get("/api/v1/jobs",
                                                         headers={"Accept": "application/x-ndjson"}).text.splitlines()]
            api_csv = c.get("/api/v1/jobs", headers={"Accept": "text/csv"}).text
            failed = c.get("/api/v1/jobs", params={"failed": "true", "limit": 1000}).json()["jobs"]
            one = c.get(f"/api/v1/jobs/{answer['jobs'][0]['id']}").json()
            reader.join(60)

        cli = [json.loads(line) for line in run_cli(["results", "--format", "json"], env).stdout.splitlines()]
        cli_csv = run_cli(["results", "--format", "csv"], env).stdout
    assert len(cli) == 1000
    assert pages == cli  # every key, every value, the same order (newest first)
    assert ndjson == cli
    assert list(csv.reader(io.StringIO(api_csv))) == list(csv.reader(io.StringIO(cli_csv)))
    assert {j["url"] for j in failed} == set(urls[990:])
    assert one == cli[-1] and "dns_ms" in one and "redirects" in one  # the detail view's data
    # Every result reached the event stream once, as the list shows it.
    assert len(events) == 1000
    by_id = {e["job"]["id"]: e["job"] for e in events}
    assert len(by_id) == 1000 and by_id == {j["id"]: j for j in cli}


def test_events_resume_from_last_event_id_and_filter(env, target, tmp_path) -> None:
    with serve(env, tmp_path / "serve.log") as server, worker(env, "--processes", "1", "--concurrency", "8"):
        token = server.token("ci")
        with server.client(token) as c:
            first = c.post("/api/v1/jobs", json={"urls": [target.url(f"/ok?a={i}") for i in range(5)]}).json()
            wait_until(lambda: c.get(f"/api/v1/batches/{first['batch']['id']}").json()["done"] == 5, 60)
            # From the start (Last-Event-ID: 0) a stream replays what is stored, then goes on live.
            events: list[dict] = []
            ready = threading.Event()
            reader = threading.Thread(target=read_events,
                                      args=(server.client(token), {"Last-Event-ID": "0"}, 5, events, ready))
            reader.start()
            reader.join(30)
            assert len(events) == 5
            last = max(e["id"] for e in events)
            c.post("/api/v1/jobs", json={"urls": [target.url(f"/status/404?b={i}") for i in range(3)]})
            resumed: list[dict] = []
            read_events(server.client(token), {"Last-Event-ID": str(last)}, 3, resumed, threading.Event(), timeout=60)
            assert sorted(e["job"]["status_code"] for e in resumed) == [404, 404, 404]
            # Filtered like the list: only failures (the three 404s and this 503).
            c.post("/api/v1/jobs", json={"urls": [target.url("/ok?c=1"), target.url("/status/503?c=2")],
                                         "options": {"retries": 1}})
            c2 = server.client(token)
            only_failed: list[dict] = []
            with c2:
                r_params = {"failed": "true"}
                with c2.stream("GET", "/api/v1/events", params=r_params, headers={"Last-Event-ID": "0"}) as r:
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            only_failed.append(json.loads(line[6:]))
                            if len(only_failed) == 4:
                                break
            assert {j["ok"] for j in only_failed} == {False} and len(only_failed) == 4


def test_readyz_says_which_service_is_away(pg_url, queue_name, tmp_path) -> None:
    env = runner_env(pg_url, "amqp://guest:guest@127.0.0.1:1//", queue_name)
    with serve(env, tmp_path / "serve.log") as server, server.client(server.token("ci")) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["database"] == "ok" and r.json()["broker"].startswith("unreachable")
        assert "guest:guest" not in r.text


def test_a_result_committed_late_with_a_lower_seq_still_reaches_the_stream(env, pg_url, tmp_path) -> None:
    """Two writers commit crosswise: seq N+1 is visible before seq N. A stream that moved
    past N+1 at once would never send N; the hold-back (runner.api.events.HOLD) does."""
    import psycopg2

    with serve(env, tmp_path / "serve.log") as server:  # no worker: the jobs stay queued
        token = server.token("ci")
        with server.client(token) as c:
            ids = [j["id"] for j in c.post("/api/v1/jobs",
                                           json={"urls": ["https://a.example/", "https://b.example/"]}).json()["jobs"]]
        events: list[dict] = []
        ready = threading.Event()
        reader = threading.Thread(target=read_events, args=(server.client(token), {}, 2, events, ready, 30))
        reader.start()
        assert ready.wait(30)  # the stream has read its starting point
        insert = ("INSERT INTO results (job_id, outcome, ok, attempts, checked_at) VALUES (%s, 'ok', true, 1, now()); "
                  "UPDATE jobs SET state = 'done' WHERE id = %s; NOTIFY urltester")
        late, early = psycopg2.connect(pg_url), psycopg2.connect(pg_url)
        try:
            with late.cursor() as cur:
                cur.execute(insert, (ids[0], ids[0]))  # takes seq N, not committed yet
            with early.cursor() as cur:
                cur.execute(insert, (ids[1], ids[1]))  # takes seq N+1
            early.commit()
            wait_until(lambda: len(events) == 1, 10, message="the stream to send N+1")
            late.commit()
        finally:
            late.close()
            early.close()
        reader.join(20)
    assert sorted(e["job"]["id"] for e in events) == sorted(ids)
    assert [e["job"]["id"] for e in events] == [ids[1], ids[0]]  # N+1 first, then the late N
