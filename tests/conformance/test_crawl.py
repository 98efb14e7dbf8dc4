"""`runner crawl` of the generated site on a real nginx (tests/support/site.py).

On the embedded default (SQLite, checks in-process) and on real PostgreSQL and RabbitMQ
with `runner start` workers as processes. What a user sees is asserted against the site's
own manifest: the broken links found, where each is linked from, what nginx was asked for
(robots.txt kept /private/ out, each URL fetched once), and the exit code. Debian's
linkchecker, crawling the same site, is the referee for the set of broken links.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pytest

from db import JobFilter, open_store
from tests.support import site as site_module
from tests.support.services import run_cli, runner_env, wait_until, worker
from tests.support.site import Site

DEEP = "100"  # deeper than the site: every page is reached (linkchecker's default has no limit)


def jobs(database_url: str, batch: str) -> list:
    store = open_store(database_url)
    try:
        return list(store.iter_jobs(JobFilter(batch=batch)))
    finally:
        store.close()


def failed_rows(env: dict[str, str], batch: str) -> list[dict]:
    out = run_cli(["results", "--batch", batch, "--failed", "--format", "json"], env)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def served_paths(site: Site, since: int) -> Counter[str]:
    return Counter(path for _, _, path, _ in site.requests()[since:])


def linkchecker_broken(site: Site) -> set[str]:
    out = site_module.linkchecker(site.url("/index.html"), "--check-extern",
                                  "--ignore-url=^mailto:", "--ignore-url=^tel:")
    rows = list(csv.DictReader(io.StringIO("".join(line + "\n" for line in out.stdout.splitlines()
                                                   if not line.startswith("#"))), delimiter=";"))
    return {row["url"] for row in rows if row["valid"] == "False"}


def test_a_crawl_on_the_embedded_default_finds_every_broken_link_and_where_it_is(served_site: Site,
                                                                                 sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    since = len(served_site.requests())
    out = run_cli(["crawl", served_site.url("/index.html"), "--depth", DEEP, "--batch", "site", "--wait",
                   "--deadline", "5"], env)
    assert out.returncode == 1, out.stderr  # broken links: exit 1
    assert "broken links and where they are: runner results --batch" in out.stdout
    recorded = jobs(sqlite_url, "site")
    urls = [j.url for j in recorded]
    assert len(urls) == len(set(urls))  # each URL once, however many pages link to it
    assert {j.url for j in recorded if j.ok is False} == served_site.broken
    assert set(served_site.pages) <= set(urls)  # the whole chain of posts, through the links
    assert served_site.assets - {served_site.url("/docs/README.md")} <= set(urls)
    assert served_site.url("/docs/README.md") in urls  # linked from the docs: checked (not read)
    assert not any("#" in u or u.startswith(("mailto:", "tel:", "javascript:", "data:")) for u in urls)
    assert not any("/private/" in u for u in urls)  # robots.txt: never fetched, never checked
    paths = served_paths(served_site, since)
    assert not any(p.startswith("/private/") for p in paths)
    assert paths["/robots.txt"] == 1
    assert max(count for path, count in paths.items() if path != "/robots.txt") == 1  # each page fetched once

    rows = {row["url"]: row for row in failed_rows(env, "site")}
    u = served_site.url
    assert rows[u("/missing.html")]["referrers"] == [{"url": u("/index.html"), "text": "A page that was removed"}]
    assert rows[u("/img/missing.png")]["referrers"] == [{"url": u("/about.html"), "text": "Our team"}]
    # /docs/ (the guide's "./") and /docs/index.html are two URLs of one page: both link to it.
    assert rows[u("/docs/nothere.html")]["referrers"] == [{"url": u("/docs/"), "text": "Old page"},
                                                          {"url": u("/docs/index.html"), "text": "Old page"}]
    assert rows[u("/blog/post-0.html")]["referrers"] == [{"url": u("/blog/post-1.html"), "text": "Previous"}]
    assert rows[f"{served_site.dead}/"]["referrers"] == [{"url": u("/index.html"),
                                                           "text": "A partner whose server is gone"}]

    table = run_cli(["results", "--batch", "site", "--failed"], env)
    assert f'linked from {u("/index.html")} "A page that was removed"' in table.stdout
    table_csv = run_cli(["results", "--batch", "site", "--failed", "--format", "csv"], env)
    by_url = {row["url"]: row for row in csv.DictReader(io.StringIO(table_csv.stdout))}
    assert by_url[u("/img/missing.png")]["referrers"] == f'{u("/about.html")} "Our team"'


def test_the_broken_links_are_linkcheckers(served_site: Site, sqlite_url: str) -> None:
    """The referee: linkchecker, with its defaults, on the same site."""
    env = runner_env(sqlite_url, None)
    out = run_cli(["crawl", served_site.url("/index.html"), "--depth", DEEP, "--batch", "ref", "--wait"], env)
    assert out.returncode == 1, out.stderr
    ours = {j.url for j in jobs(sqlite_url, "ref") if j.ok is False}
    assert ours == linkchecker_broken(served_site)


def test_depth_scope_max_urls_and_no_robots(served_site: Site, sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    u = served_site.url
    # --depth 0: the start URL alone; nothing broken, exit 0.
    out = run_cli(["crawl", u("/docs/guide.html"), "--depth", "0", "--batch", "d0", "--wait"], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "checked 1 URL: 1 ok, 0 broken" in out.stdout
    assert [j.url for j in jobs(sqlite_url, "d0")] == [u("/docs/guide.html")]
    # --depth 1: the start page and what it links to; the blog's chain is not followed.
    assert run_cli(["crawl", u("/index.html"), "--depth", "1", "--batch", "d1", "--wait"], env).returncode == 1
    shallow = {j.url for j in jobs(sqlite_url, "d1")}
    assert u("/blog/post-1.html") in shallow and u("/blog/post-2.html") not in shallow
    assert u("/docs/guide.html") not in shallow
    # --scope prefix: under /docs/ only; ../about.html is checked, never followed.
    assert run_cli(["crawl", u("/docs/index.html"), "--scope", "prefix", "--depth", DEEP, "--batch", "px",
                    "--wait"], env).returncode == 1
    prefix = {j.url for j in jobs(sqlite_url, "px")}
    assert u("/about.html") in prefix and u("/img/missing.png") not in prefix  # about.html not read
    # --max-urls: the crawl stops growing there.
    run_cli(["crawl", u("/index.html"), "--depth", DEEP, "--max-urls", "7", "--batch", "mx", "--wait"], env)
    assert len(jobs(sqlite_url, "mx")) == 7
    # --no-robots: /private/ is followed too, and its broken link found.
    assert run_cli(["crawl", u("/index.html"), "--depth", DEEP, "--no-robots", "--batch", "nr", "--wait"],
                   env).returncode == 1
    broken = {j.url for j in jobs(sqlite_url, "nr") if j.ok is False}
    assert broken == served_site.broken | {u("/private/gone.html")}


def test_a_crawl_across_runner_start_workers_on_postgresql_and_rabbitmq(served_site: Site, pg_url: str,
                                                                         amqp_url: str, queue_name: str,
                                                                         tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    since = len(served_site.requests())
    # With RabbitMQ the command returns at once: the crawl is the workers' (none yet).
    out = run_cli(["crawl", served_site.url("/index.html"), "--depth", DEEP, "--batch", "fleet"], env)
    assert out.returncode == 0, out.stderr
    assert ("crawl     batch 1 (fleet): 0 checked, 1 to go, 1 URLs found (at most 100,000)"
            in run_cli(["status"], env).stdout)

    def crawls() -> list[dict]:
        return json.loads(run_cli(["status", "--json"], env).stdout)["crawls"]

    assert crawls() == [{"batch": 1, "name": "fleet", "checked": 0, "pending": 1, "found": 1, "max_urls": 100_000,
                         "robots_skipped": 0}]
    with worker(env, "--processes", "1", "--concurrency", "8", log_path=tmp_path / "w1.log"), \
            worker(env, "--processes", "1", "--concurrency", "8", log_path=tmp_path / "w2.log"):
        wait_until(lambda: crawls() == [], 120, interval=0.5, message="the crawl to end")
        status = run_cli(["status"], env)
        assert "0 queued, 0 running" in status.stdout and "crawl " not in status.stdout
    recorded = jobs(pg_url, "fleet")
    urls = [j.url for j in recorded]
    assert len(urls) == len(set(urls))  # two workers never enqueued one URL twice
    assert {j.url for j in recorded if j.ok is False} == served_site.broken
    assert all(j.state == "done" for j in recorded)
    paths = served_paths(served_site, since)
    assert not any(p.startswith("/private/") for p in paths)
    assert max(count for path, count in paths.items() if path != "/robots.txt") == 1
    assert paths["/robots.txt"] <= 2  # once per worker process at most
    rows = {row["url"]: row for row in failed_rows(env, "fleet")}
    assert rows[served_site.url("/img/missing.png")]["referrers"] == [
        {"url": served_site.url("/about.html"), "text": "Our team"}]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_one_url_is_claimed_once_however_many_workers_find_it(kind: str, sqlite_url: str, request) -> None:
    """The database decides: threads claiming the same links at once each get a share, and
    together every link exactly once; referrers stop at 20."""
    import threading

    from db.crawls import Crawl, claim_urls, create_crawl, get_crawl, referrers_of

    url = sqlite_url if kind == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url, max_connections=16)
    try:
        batch = store.create_batch("claims")
        create_crawl(store, Crawl(batch_id=batch.id, roots=("http://127.0.0.1:1/",), scope="host", depth=3,
                                  max_urls=1000, robots=True))
        links = [(f"http://127.0.0.1:1/p{i}", 1) for i in range(200)]
        got: list[list[tuple[str, int]]] = []
        lock = threading.Lock()

        def claim(n: int) -> None:
            mine = claim_urls(store, batch.id, links, [(links[0][0], f"http://127.0.0.1:1/from{n}", f"t{n}")])
            with lock:
                got.append(mine)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claimed = [u for mine in got for u, _ in mine]
        assert sorted(claimed) == sorted(u for u, _ in links)
        assert get_crawl(store, batch.id).urls == 201  # the root and the 200 links
        ids = store.insert_jobs(batch.id, [__import__("db").NewJob(links[0][0], "{}")])
        assert len(referrers_of(store, ids)[ids[0]]) == 20
        store.cancel_jobs(batch=batch.id)  # runner cancel --batch: the crawl takes no new URL
        assert claim_urls(store, batch.id, [("http://127.0.0.1:1/new", 2)]) == []
    finally:
        store.close()


def test_the_api_and_the_tui_detail_show_where_a_broken_link_is(served_site: Site, sqlite_url: str,
                                                                 tmp_path) -> None:
    from tests.api.conftest import serve

    env = runner_env(sqlite_url, None)
    run_cli(["crawl", served_site.url("/about.html"), "--depth", "1", "--batch", "api", "--wait"], env)
    broken = next(j for j in jobs(sqlite_url, "api") if j.url == served_site.url("/img/missing.png"))
    with serve(env, tmp_path / "serve.log") as server, server.client(server.token("crawl")) as c:
        answer = c.get(f"/api/v1/jobs/{broken.id}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["referrers"] == [{"url": served_site.url("/about.html"), "text": "Our team"}]


def test_referrers_are_shown_as_text_never_as_markup() -> None:
    from dataclasses import replace

    from tui.detail import referrers_text

    view = replace(_a_view(), referrers=[{"url": "http://127.0.0.1:1/p", "text": "[bold red]x[/] \x1b[2J"}])
    shown = referrers_text(view)
    assert shown is not None
    assert "[bold red]x[/]" in shown.plain and "\x1b" not in shown.plain
    assert referrers_text(replace(view, referrers=None)) is None


def _a_view():
    from datetime import UTC, datetime

    from db import JobView

    return JobView(id=1, url="http://127.0.0.1:1/x", batch="b", batch_id=1, state="done", options={},
                   submitted_at=datetime.now(UTC), published_at=None, publish_error=None, started_at=None,
                   checked_at=None)


def test_a_crawl_keeps_its_hosts_limits_across_the_fleet(served_site: Site, pg_url: str, amqp_url: str,
                                                         queue_name: str, tmp_path) -> None:
    """Every request of a crawl (robots.txt included) waits for its host's fleet-wide turn:
    two `runner start` processes, 8 checks at once each, never more than 5 requests to
    nginx in any second."""
    env = runner_env(pg_url, amqp_url, queue_name)
    assert run_cli(["limits", "set", "127.0.0.1", "--rate", "5"], env).returncode == 0
    since = len(served_site.requests())
    with worker(env, "--processes", "2", "--concurrency", "8", log_path=tmp_path / "w.log"):
        wait_until(lambda: len(json.loads(run_cli(["status", "--json"], env).stdout)["workers"]) == 2, 60,
                   message="two worker processes")
        out = run_cli(["crawl", served_site.url("/index.html"), "--depth", "2", "--batch", "paced", "--wait",
                       "--wait-timeout", "120"], env, timeout=180)
    assert out.returncode == 1, out.stdout + out.stderr
    times = sorted(when for when, _, _, _ in served_site.requests()[since:])
    assert len(times) >= 10
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 5, f"{busiest} requests in one second"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_claimed_link_has_its_job_or_is_not_claimed(kind: str, sqlite_url: str, request) -> None:
    """A worker that dies while recording a page's links leaves nothing half done: the claim
    and the jobs are one transaction, so the redelivered page claims (and records) them again."""
    from db.crawls import Crawl, claim_and_record, create_crawl, get_crawl

    url = sqlite_url if kind == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url)
    try:
        batch = store.create_batch("atomic")
        create_crawl(store, Crawl(batch_id=batch.id, roots=("http://127.0.0.1:1/",), scope="host", depth=3,
                                  max_urls=1000, robots=True))
        links = [(f"http://127.0.0.1:1/p{i}", 1) for i in range(5)]
        referrers = [(u, "http://127.0.0.1:1/", "") for u, _ in links]

        def dies(link: str, depth: int) -> str:  # the worker, killed between the claim and its jobs
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            claim_and_record(store, batch.id, links, referrers, dies)
        assert get_crawl(store, batch.id).urls == 1  # the root only: nothing was claimed
        assert store.count_jobs(JobFilter(batch=str(batch.id))) == 0
        recorded = claim_and_record(store, batch.id, links, referrers, lambda link, depth: "{}")
        assert sorted(u for _, u, _ in recorded) == sorted(u for u, _ in links)
        assert sorted(v.url for v in store.list_jobs(JobFilter(batch=str(batch.id)), limit=10)) == \
            sorted(u for u, _ in links)
        assert claim_and_record(store, batch.id, links, referrers, lambda link, depth: "{}") == []
    finally:
        store.close()
