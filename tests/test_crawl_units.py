"""The crawl's pieces that need no server: scope, the job's marker, the body reader."""

from __future__ import annotations

import pytest

from db.crawls import Crawl
from runner.jobs.crawl import PageLinks, in_scope, job_options, marker


def crawl(root: str, scope: str) -> Crawl:
    return Crawl(batch_id=1, roots=(root,), scope=scope, depth=3, max_urls=10, robots=True)


@pytest.mark.parametrize(("root", "scope", "url", "inside"), [
    ("https://www.example.com/", "host", "http://www.example.com/x", True),        # http and https: one host
    ("https://www.example.com/", "host", "https://www.example.com:8443/", False),  # another port
    ("https://www.example.com/", "host", "https://blog.example.com/", False),
    ("https://www.example.com/", "domain", "https://blog.example.com/x", True),
    ("https://www.example.com/", "domain", "https://example.com/", True),
    ("https://www.example.com/", "domain", "https://notexample.com/", False),
    ("https://example.com/docs/index.html?v=1", "prefix", "https://example.com/docs/a/b.html", True),
    ("https://example.com/docs/index.html?v=1", "prefix", "https://example.com/about.html", False),
    ("https://example.com/docs", "prefix", "https://example.com/about.html", True),  # the folder is /
])
def test_scope(root: str, scope: str, url: str, inside: bool) -> None:
    assert in_scope(url, crawl(root, scope)) is inside


def test_the_marker_rides_in_the_options_and_a_bad_one_is_no_crawl() -> None:
    import json

    options = json.loads(job_options({"deadline": 5.0}, 7, 2, True))
    assert options == {"deadline": 5.0, "crawl": [7, 2, True]}
    assert marker(options) == (7, 2, True)
    for bad in ([7, 2], ["7", 2, True], [7, 2, 1], "x", None):
        assert marker({"crawl": bad}) is None


def test_page_links_reads_html_as_it_streams_and_declines_the_rest() -> None:
    sink = PageLinks()
    assert sink.start("https://example.com/a/", "image/png") is False
    assert sink.start("https://example.com/a/", "text/html; charset=ISO-8859-1") is True
    body = ('<p><a href="b.html">B\xe9</a> <a href="mailto:x@example.com">m</a> '
            '<img src="/i.png" alt="I"></p>').encode("latin-1")
    for i in range(0, len(body), 7):
        sink.feed(body[i:i + 7])
    links = [(link.url, link.text) for link in sink.finish() if link.url]
    assert links == [("https://example.com/a/b.html", "B\xe9"), ("https://example.com/i.png", "I")]
