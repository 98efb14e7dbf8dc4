"""`runner import` of sitemaps and documents served by a real nginx (tests/support/site.py).

What nginx does is nobody here's code: it sends ``/sitemaps/pages.xml`` with
``Content-Encoding: gzip``, serves the ``.xml.gz`` sitemaps as they are, redirects, and
answers 503 with Retry-After. Each test asserts what a user sees (exit code, the lines on
stderr, the summary, the jobs recorded) against the site's own manifest; the access log
says what the import fetched, how, and when. Debian's linkchecker crawls the same site.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from db import JobFilter, open_store
from tests.support import site as site_module
from tests.support.services import run_cli, runner_env
from tests.support.site import Site

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    return runner_env(sqlite_url, None)


def jobs(database_url: str, batch: str) -> list:
    store = open_store(database_url)
    try:
        return list(store.iter_jobs(JobFilter(batch=batch)))
    finally:
        store.close()


def served(site: Site, since: int, path_prefix: str = "/") -> list[tuple[float, int, str, str]]:
    """What nginx served after the first ``since`` requests of its log."""
    return [r for r in site.requests()[since:] if r[2].startswith(path_prefix)]


def run_cli_peak(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """``runner ARGS`` and the peak memory of that process (VmHWM, MiB)."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['runner', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('runner', run_name='__main__')\n"
        "finally:\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "    print('PEAK', int(hwm.split()[1]) // 1024, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    lines = out.stderr.splitlines()
    peak = int(lines[-1].split()[1])
    out.stderr = "\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else "")
    return out, peak


def test_a_sitemap_index_over_a_plain_and_a_gzip_sitemap(served_site: Site, env, sqlite_url) -> None:
    since = len(served_site.requests())
    out = run_cli(["import", served_site.url("/sitemap.xml"), "--batch", "sm", "--deadline", "5"], env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    n = len(served_site.sitemap_urls)
    assert f"(sitemap): 3 sitemaps, {n} entries, {n} jobs queued in batch 'sm'" in out.stdout
    recorded = jobs(sqlite_url, "sm")
    assert [j.url for j in recorded] == served_site.sitemap_urls  # in the sitemaps' order
    assert [j.options for j in recorded] == [{"deadline": 5.0, "lastmod": served_site.lastmod[j.url]} for j in recorded]
    fetched = {path: encoding for _, status, path, encoding in served(served_site, since, "/sitemap")}
    assert fetched == {"/sitemap.xml": "gzip", "/sitemaps/pages.xml": "gzip", "/sitemaps/blog.xml.gz": "-"}


def test_bad_entries_are_named_by_sitemap_line_and_entry(served_site: Site, env, sqlite_url) -> None:
    url = served_site.url("/sitemaps/errors.xml")
    out = run_cli(["import", url, "--batch", "errors", "--deadline", "5"], env)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"{url}:4 (entry 2): unsupported scheme 'ftp' (use http or https): 'ftp://files.example.test/dump.tar'",
        f"{url}:5 (entry 3): entry without a <loc>",
        f"{url}:6 (entry 4): lastmod is not a W3C date such as 2026-11-27 (the URL is imported without it): "
        "'last tuesday'",
    ]
    assert ("1 sitemap, 4 entries, 2 jobs queued" in out.stdout
            and "2 rejected, 1 duplicate, 1 with a remark" in out.stdout)
    assert {j.url: j.options.get("lastmod") for j in jobs(sqlite_url, "errors")} == {
        served_site.url("/index.html"): "2026-11-27", served_site.url("/about.html"): None}


def test_indexes_are_followed_three_levels_deep_and_no_further(served_site: Site, env) -> None:
    out = run_cli(["import", served_site.url("/sitemaps/deep.xml")], env)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"{served_site.url('/sitemaps/deep-2.xml')}:3 (entry 1): a sitemap index nested more "
                                  f"than 3 levels deep: not followed: '{served_site.url('/sitemaps/deep-3.xml')}'")


@pytest.mark.parametrize("path", ["/sitemaps/bomb.xml.gz", "/sitemaps/huge.xml"])
def test_a_gzip_bomb_or_a_5_gib_sitemap_is_cut_at_50_mb_with_flat_memory(served_site: Site, env, sqlite_url,
                                                                         path) -> None:
    since = len(served_site.requests())
    url = served_site.url(path)
    out, peak = run_cli_peak(["import", url, "--batch", "bomb", "--deadline", "5"], env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip() == (f"{url}:4: larger than 52,428,800 bytes uncompressed (50 MB, the sitemaps "
                                  "protocol's limit): the rest of this sitemap is not read")
    assert "1 sitemap, 1 entry, 1 jobs queued" in out.stdout
    assert [j.url for j in jobs(sqlite_url, "bomb")] == [served_site.url("/index.html")]
    assert [(p, e) for _, _, p, e in served(served_site, since, "/sitemaps/")] == [
        (path, "gzip" if path.endswith(".xml") else "-")]
    assert peak < 120, f"peak RSS {peak} MiB for a 5 GiB sitemap"


def test_an_html_page_by_url_resolves_against_where_it_was_redirected(served_site: Site, env, sqlite_url) -> None:
    out = run_cli(["import", served_site.url("/moved/"), "--format", "html", "--batch", "docs", "--deadline", "5"], env)
    assert out.returncode == 0, out.stderr
    assert "(html): 6 links, 5 jobs queued" in out.stdout  # guide.html and guide.html#step-2 are one
    assert sorted(j.url for j in jobs(sqlite_url, "docs")) == sorted(served_site.url(p) for p in (
        "/css/site.css", "/docs/guide.html", "/about.html", "/docs/nothere.html", "/docs/README.md"))


def test_a_markdown_document_by_url(served_site: Site, env, sqlite_url) -> None:
    out = run_cli(["import", served_site.url("/docs/README.md"), "--batch", "md", "--deadline", "5"], env)
    assert out.returncode == 0, out.stderr
    assert "(markdown): 11 links, 6 jobs queued" in out.stdout
    assert "3 skipped (mailto 1, javascript 1, fragment 1)" in out.stdout
    assert sorted(j.url for j in jobs(sqlite_url, "md")) == sorted(served_site.url(p) for p in (
        "/docs/guide.html", "/img/logo.png", "/about.html", "/blog/post-1.html", "/docs/nothere.html",
        "/img/missing.png"))


def test_the_workers_address_policy_applies_to_the_source(served_site: Site, env) -> None:
    since = len(served_site.requests())
    out = run_cli(["--deny-private", "import", served_site.url("/sitemap.xml")], env)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"runner: cannot fetch {served_site.url('/sitemap.xml')}: blocked by address "
                                  "policy: 127.0.0.1 (loopback address)")
    assert served(served_site, since) == []  # not a byte asked of the server


def test_a_busy_source_is_asked_again_after_its_retry_after_then_refused(served_site: Site, env) -> None:
    since = len(served_site.requests())
    out = run_cli(["import", served_site.url("/busy.xml")], env)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"runner: cannot fetch {served_site.url('/busy.xml')}: HTTP 503 Service "
                                  "Temporarily Unavailable")
    asked = [when for when, status, path, _ in served(served_site, since) if path == "/busy.xml"]
    assert len(asked) == 3
    assert all(b - a >= 0.9 for a, b in zip(asked, asked[1:], strict=False))  # Retry-After: 1, kept


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_the_fleet_s_host_limits_pace_the_fetches(served_site: Site, pg_url, amqp_url, queue_name) -> None:
    env = runner_env(pg_url, amqp_url, queue_name, URLTESTER_HOST_RATE="4")
    since = len(served_site.requests())
    out = run_cli(["import", served_site.url("/sitemap.xml"), "--batch", "paced"], env)
    assert out.returncode == 0, out.stderr
    times = [when for when, _, path, _ in served(served_site, since, "/sitemap")]
    assert len(times) == 3
    # 4/s fleet-wide (slots spaced for 95% of it): a fetch at most every 0.26 s.
    assert all(b - a >= 0.2 for a, b in zip(times, times[1:], strict=False)), times
    recorded = jobs(pg_url, "paced")
    assert len(recorded) == len(served_site.sitemap_urls) and all(j.state == "queued" for j in recorded)
    assert recorded[0].options == {"lastmod": served_site.lastmod[recorded[0].url]}


def test_linkchecker_runs_against_the_site_and_finds_its_broken_links(served_site: Site) -> None:
    out = site_module.linkchecker(served_site.url("/index.html"), "--check-extern",
                                  "--ignore-url=^mailto:", "--ignore-url=^tel:")
    assert out.returncode == 1, out.stderr  # 1: broken links found
    rows = list(csv.DictReader(io.StringIO("".join(line + "\n" for line in out.stdout.splitlines()
                                                   if not line.startswith("#"))), delimiter=";"))
    broken = {row["url"] for row in rows if row["valid"] == "False"}
    assert broken == served_site.broken
    assert not any("/private/" in row["url"] for row in rows)  # robots.txt kept it out
