"""URLs over time through the API, on real PostgreSQL and RabbitMQ with a worker process:
two nightly imports, then ``GET /api/v1/urls``, ``/urls/summary``, ``/urls/history`` and
``/changes`` answer what ``runner urls``, ``runner history`` and ``runner changes --format
json`` print (the same keys and values), page through, name what is wrong, and
``/api/v1/events`` sends ``event: change`` as a state moves. A read-only token does."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import serve
from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.rabbitmq]

# (name, night 1 status, night 2 status or None: not in night 2)
PLAN = [("steady", 200, 200), ("broke", 200, 500), ("healed", 500, 200), ("dead", 500, 500), ("old", 200, None)]


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def night(target, tmp_path: Path, n: int, env: dict[str, str], batch: str = "nightly") -> None:
    names = [name for name, *statuses in PLAN if statuses[n - 1] is not None]
    for name in names:
        target.switch[name] = dict((p[0], p[n]) for p in PLAN)[name]
    f = tmp_path / f"urls{n}-{batch}.txt"
    f.write_text("".join(target.url(f"/switch?key={name}") + "\n" for name in names))
    out = run_cli(["import", str(f), "--batch", batch, "--wait", "--quiet", "--wait-timeout", "60"], env)
    assert out.returncode in (0, 1), out.stdout + out.stderr


def test_urls_history_changes_and_change_events(pg_url, amqp_url, queue_name, target, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    url = {name: target.url(f"/switch?key={name}") for name, *_ in PLAN}
    with worker(env, "--processes", "1", "--concurrency", "4"), serve(env, tmp_path / "serve.log") as server:
        night(target, tmp_path, 1, env)
        night(target, tmp_path, 2, env)
        token = server.token("reader", "--read-only")  # reading needs no more
        with server.client(token) as c:
            # --- the same keys and values as the CLI's JSON
            cli_urls = lines(run_cli(["urls", "--format", "json"], env).stdout)
            api = c.get("/api/v1/urls", params={"limit": 1000})
            assert api.status_code == 200, api.text
            assert api.json()["urls"] == cli_urls and api.json()["next"] is None
            assert [list(u) for u in api.json()["urls"]] == [list(u) for u in cli_urls]
            assert {u["url"]: u["state"] for u in cli_urls} == {
                url["steady"]: "ok", url["broke"]: "failing", url["healed"]: "ok", url["dead"]: "failing",
                url["old"]: "ok"}

            failing = c.get("/api/v1/urls", params={"state": "failing", "sort": "url"}).json()["urls"]
            assert [u["url"] for u in failing] == sorted([url["broke"], url["dead"]])
            assert [u["url"] for u in c.get("/api/v1/urls",
                                            params={"contains": "key=hea"}).json()["urls"]] == [url["healed"]]

            # --- pages: every URL once, in the order of one long page
            for sort in ("state", "url", "latency", "since"):
                whole = [u["url"] for u in c.get("/api/v1/urls", params={"sort": sort}).json()["urls"]]
                paged, cursor = [], None
                while True:
                    page = c.get("/api/v1/urls",
                                 params={"sort": sort, "limit": 2, **({"cursor": cursor} if cursor else {})}).json()
                    paged += [u["url"] for u in page["urls"]]
                    cursor = page["next"]
                    if cursor is None:
                        break
                assert paged == whole and len(whole) == 5, sort

            summary = c.get("/api/v1/urls/summary").json()
            assert {k: summary[k] for k in ("ok", "slow", "failing", "pending", "total")} == {
                "ok": 3, "slow": 0, "failing": 2, "pending": 0, "total": 5}
            assert summary["last_batch"]["name"] == "nightly"

            cli_story = json.loads(run_cli(["history", url["broke"], "--format", "json"], env).stdout)
            story = c.get("/api/v1/urls/history", params={"url": url["broke"]})
            assert story.status_code == 200, story.text
            assert story.json() == cli_story and list(story.json()) == list(cli_story)
            assert [(ch["from"], ch["to"]) for ch in story.json()["changes"]] == [("ok", "failing"), (None, "ok")]

            cli_changes = lines(run_cli(["changes", "--batch", "nightly", "--format", "json"], env).stdout)
            changes = c.get("/api/v1/changes", params={"batch": "nightly"})
            assert changes.status_code == 200, changes.text
            body = changes.json()
            assert (body["changes"] == cli_changes
                    and [list(d) for d in body["changes"]] == [list(d) for d in cli_changes])
            assert {d["url"]: d["change"] for d in body["changes"]} == {
                url["broke"]: "new_failure", url["healed"]: "recovered", url["dead"]: "still_failing",
                url["old"]: "gone"}
            assert (body["counts"]["new_failure"] == 1 and body["counts"]["gone"] == 1
                    and body["batch"]["name"] == "nightly")
            since = c.get("/api/v1/changes", params={"since": "1h"}).json()  # all checked within: all new
            assert since["changes"] == lines(run_cli(["changes", "--since", "1h", "--format", "json"], env).stdout)
            assert since["counts"]["new"] == 5 and since["batch"] is None

            # --- what is wrong, named
            def detail(r: httpx.Response) -> str:
                return json.dumps(r.json()["detail"])

            for path, params, status, named in [
                ("/api/v1/urls", {"batch": "nope"}, 404, "nope"),
                ("/api/v1/urls", {"changed_since": "last tuesday"}, 422, "changed_since"),
                ("/api/v1/urls", {"window": "a week"}, 422, "window"),
                ("/api/v1/urls", {"cursor": "bogus"}, 422, "cursor"),
                ("/api/v1/urls", {"sort": "colour"}, 422, "sort"),
                ("/api/v1/changes", {}, 422, "batch"),
                ("/api/v1/changes", {"batch": "nope"}, 404, "nope"),
                ("/api/v1/changes", {"batch": "nightly", "against": "nada"}, 404, "nada"),
                ("/api/v1/changes", {"since": "soon"}, 422, "since"),
                ("/api/v1/changes", {"since": "1h", "slower": "0.5x"}, 422, "slower"),
                ("/api/v1/changes", {"since": "1h", "against": "nightly"}, 422, "against"),
                ("/api/v1/urls/history", {"url": target.url("/never")}, 404, "never checked"),
                ("/api/v1/urls/history", {"url": "ftp://example.com/"}, 422, "url"),
                ("/api/v1/urls/history", {"url": url["broke"], "since": "yesterday-ish"}, 422, "since"),
            ]:
                r = c.get(path, params=params)
                assert r.status_code == status and named in detail(r), (path, params, r.status_code, r.text)
                assert "Traceback" not in r.text

            # --- event: change, live; a stream's `text` filters them
            streams: dict[str, list[dict]] = {"all": [], "dead": []}
            opened = {name: threading.Event() for name in streams}

            def listen(name: str, params: dict[str, str], until: str) -> None:
                with httpx.Client(base_url=server.base, timeout=60) as s, s.stream(
                        "GET", "/api/v1/events", params=params, headers={"Authorization": f"Bearer {token}"}) as r:
                    kind = None
                    for line in r.iter_lines():
                        if line.startswith("retry:"):
                            opened[name].set()
                        elif line.startswith("event:"):
                            kind = line[6:].strip()
                        elif line.startswith("data:") and kind == "change":
                            streams[name].append(json.loads(line[5:]))
                            if streams[name][-1]["url"] == until:
                                return

            for name, params, until in (("all", {}, url["broke"]), ("dead", {"text": "key=dead"}, url["dead"])):
                threading.Thread(target=listen, args=(name, params, until), daemon=True).start()
            assert all(e.wait(30) for e in opened.values())
            for name in ("broke", "dead"):  # one after the other: the changes commit in this order
                target.switch[name] = 200
                out = run_cli(["submit", url[name], "--wait", "--batch", "third"], env)
                assert out.returncode == 0, out.stdout + out.stderr
            wait_until(lambda: any(e["url"] == url["broke"] for e in streams["all"]), 30, 0.1, "event: change")
            change = next(e for e in streams["all"] if e["url"] == url["broke"])
            assert change["change"] == "recovered" and change["from"] == "failing" and change["to"] == "ok"
            assert list(change) == ["url", "change", "at", "from", "to", "outcome", "status_code", "error", "job_id"]
            wait_until(lambda: any(e["url"] == url["dead"] for e in streams["dead"]), 30, 0.1, "the filtered change")
            # broke's passed by
            assert [(e["url"], e["change"]) for e in streams["dead"]] == [(url["dead"], "recovered")]
