"""`runner import --format html|markdown|sitemap` of files, on the embedded default: the CLI contract.

The documents link to a local target server, so the embedded checks (run in the importing
process) finish at once; the tests read what was recorded from the store.
"""

from __future__ import annotations

import gzip
import json

import pytest

from db import JobFilter, open_store
from tests.support.services import run_cli, runner_env
from tests.support.targets import TargetServer


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    return runner_env(sqlite_url, None)


def jobs(sqlite_url: str, batch: str) -> list:
    store = open_store(sqlite_url)
    try:
        return list(store.iter_jobs(JobFilter(batch=batch)))
    finally:
        store.close()


def test_html_links_are_imported_each_bad_one_named_by_its_line(env, sqlite_url, target: TargetServer,
                                                                tmp_path) -> None:
    page = tmp_path / "page.html"
    page.write_text(f"""<!doctype html>
<html><head><link rel="stylesheet" href="/ok?css"></head>
<body>
<a href="/ok">Home</a> <a href="/ok#again">again</a> <a href="{target.url('/ok?abs')}">abs</a>
<a href="mailto:me@example.test">m</a> <a href="tel:+1555">t</a> <a href="javascript:go()">j</a>
<a href="#top">top</a> <img src="data:image/png;base64,AAAA">
<a href="ftp://files.example.test/x">ftp</a>
<img src="/status/404" srcset="/ok?1x 1x, /ok?2x 2x">
</body></html>
""")
    out = run_cli(["import", str(page), "--base-url", target.url("/docs/"), "--batch", "html", "--deadline", "5"], env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [
        f"{page}:7: unsupported scheme 'ftp' (use http or https): 'ftp://files.example.test/x'"]
    assert (f"imported {page} (html): 13 links, 6 jobs queued in batch 'html'") in out.stdout
    assert "1 rejected, 1 duplicate, 5 skipped (mailto 1, tel 1, javascript 1, data 1, fragment 1)" in out.stdout
    assert sorted(j.url for j in jobs(sqlite_url, "html")) == sorted(target.url(p) for p in (
        "/ok?css", "/ok", "/ok?abs", "/status/404", "/ok?1x", "/ok?2x"))


def test_relative_links_need_a_base_url_and_a_bad_one_is_a_usage_error(env, sqlite_url, target, tmp_path) -> None:
    page = tmp_path / "links.htm"
    page.write_text(f'<a href="/ok">rel</a>\n<a href="{target.url("/ok")}">abs</a>\n')
    out = run_cli(["import", str(page), "--batch", "nobase"], env)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"{page}:1: a href: relative link and no base URL to resolve it against "
                                  "(give --base-url): '/ok'")
    assert [j.url for j in jobs(sqlite_url, "nobase")] == [target.url("/ok")]
    out = run_cli(["import", str(page), "--base-url", "docs/"], env)
    assert out.returncode == 2
    assert out.stderr.strip() == ("runner: --base-url 'docs/': give an absolute http(s) URL, "
                                  "e.g. https://example.com/docs/")


def test_markdown_links_references_autolinks_and_raw_urls(env, sqlite_url, target, tmp_path) -> None:
    doc = tmp_path / "README.md"
    doc.write_text(f"""# Read me

A [link](/ok?link), an ![image](/ok?img), a [reference][r], an <{target.url('/ok?auto')}>
and a raw {target.url('/ok?raw')}; [mail](mailto:x@example.test), [js](javascript:x()), [here](#here).

```
[in a fence](/ok?fenced)
```

[broken](ftp://x.example.test/)

[r]: /ok?ref
""")
    out = run_cli(["import", str(doc), "--base-url", target.url("/"), "--batch", "md"], env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip() == f"{doc}:10: unsupported scheme 'ftp' (use http or https): 'ftp://x.example.test/'"
    assert "(markdown): 10 links, 5 jobs queued" in out.stdout
    assert "3 skipped (mailto 1, javascript 1, fragment 1)" in out.stdout
    assert sorted(j.url for j in jobs(sqlite_url, "md")) == sorted(
        target.url(f"/ok?{q}") for q in ("link", "img", "ref", "auto", "raw"))


def test_a_sitemap_file_keeps_lastmod_with_each_job(env, sqlite_url, target, tmp_path) -> None:
    xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
           f"<url><loc>{target.url('/ok?a')}</loc><lastmod>2026-11-27</lastmod></url>\n"
           f"<url><loc>{target.url('/ok?b')}</loc><lastmod>soon</lastmod></url>\n"
           f"<url><loc>gopher://old.example.test/</loc></url>\n"
           f"<url><loc>{target.url('/ok?a')}</loc><lastmod>2026-11-28</lastmod></url>\n"
           "</urlset>\n")
    gz = tmp_path / "sitemap.xml.gz"
    gz.write_bytes(gzip.compress(xml.encode()))
    out = run_cli(["import", str(gz), "--batch", "sm"], env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [
        f"{gz}:4 (entry 2): lastmod is not a W3C date such as 2026-11-27 (the URL is imported without it): 'soon'",
        f"{gz}:5 (entry 3): unsupported scheme 'gopher' (use http or https): 'gopher://old.example.test/'",
    ]
    assert (f"imported {gz} (sitemap): 1 sitemap, 4 entries, 2 jobs queued in batch 'sm'") in out.stdout
    assert "1 rejected, 1 duplicate, 1 with a remark" in out.stdout
    by_url = {j.url: j for j in jobs(sqlite_url, "sm")}
    assert by_url[target.url("/ok?a")].options == {"lastmod": "2026-11-27"}
    assert by_url[target.url("/ok?b")].options == {}
    assert all(j.state == "done" and j.outcome == "ok" for j in by_url.values())  # the check ignores lastmod
    out = run_cli(["results", "--batch", "sm", "--format", "json"], env)
    rows = {row["url"]: row for row in map(json.loads, out.stdout.splitlines())}
    assert rows[target.url("/ok?a")]["lastmod"] == "2026-11-27" and "lastmod" not in rows[target.url("/ok?b")]


def test_jsonl_and_csv_keep_lastmod_too(env, sqlite_url, target, tmp_path) -> None:
    f = tmp_path / "urls.jsonl"
    f.write_text(json.dumps({"url": target.url("/ok?j"), "lastmod": "2026-11-27T20:49Z"}) + "\n"
                 + json.dumps({"url": target.url("/ok?k"), "lastmod": 20261127}) + "\n")
    out = run_cli(["import", str(f), "--batch", "jl"], env)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip() == (f"{f}:2: lastmod is not a W3C date such as 2026-11-27 (the URL is imported "
                                  "without it): '20261127'")
    assert {j.url: j.options for j in jobs(sqlite_url, "jl")} == {
        target.url("/ok?j"): {"lastmod": "2026-11-27T20:49Z"}, target.url("/ok?k"): {}}
    c = tmp_path / "urls.csv"
    c.write_text(f"url,lastmod\n{target.url('/ok?c')},2026-11\n")
    assert run_cli(["import", str(c), "--batch", "cs"], env).returncode == 0
    assert [j.options for j in jobs(sqlite_url, "cs")] == [{"lastmod": "2026-11"}]


def test_what_is_not_a_sitemap_or_not_reachable_is_a_usage_error(env, sqlite_url, tmp_path) -> None:
    page = tmp_path / "sitemap.xml"
    page.write_text("<html><body>Not found</body></html>\n")
    out = run_cli(["import", str(page)], env)
    assert out.returncode == 2
    assert out.stderr.strip() == (f"runner: {page}:1: not a sitemap: the root element is <html>, "
                                  "not <urlset> or <sitemapindex>")
    out = run_cli(["import", "ftp://files.example.test/sitemap.xml"], env)
    assert out.returncode == 2 and "only http and https URLs (or a file) can be imported" in out.stderr
    assert jobs(sqlite_url, "x") == []


def test_a_gzip_bomb_file_is_refused_with_its_name_after_what_it_held(env, sqlite_url, target, tmp_path) -> None:
    bomb = tmp_path / "bomb.xml.gz"
    with open(bomb, "wb") as out:
        out.write(gzip.compress(f"<urlset><url><loc>{target.url('/ok?first')}</loc></url>\n".encode()))
        member = gzip.compress(b" " * (16 << 20), compresslevel=9)
        for _ in range(8):  # 128 MiB of whitespace
            out.write(member)
    out = run_cli(["import", str(bomb), "--batch", "bomb"], env)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"{bomb}:2: larger than 52,428,800 bytes uncompressed (50 MB, the sitemaps "
                                  "protocol's limit): the rest of this sitemap is not read")
    assert "1 sitemap, 1 entry, 1 jobs queued" in out.stdout
    assert [j.url for j in jobs(sqlite_url, "bomb")] == [target.url("/ok?first")]
