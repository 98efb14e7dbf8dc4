"""The check and curl fetch the same URLs from nginx, Apache httpd and an HTTP/1.0 server.

For every case they must agree on the status, the final URL, the number of redirects, the
body bytes and the HTTP version. Where they deliberately differ, the case names the
difference (``differs``) and docs/check.md says why.

curl runs as the check does: following redirects (``-L --max-redirs 10``), asking for
gzip (``--compressed``), and writing the body to a file, whose size is the body's bytes
after decompression (``size_download`` counts the bytes on the wire).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.check.checker import Checker, CheckResult
from runner.check.options import parse_options

from . import servers
from .conftest import Site, curl

CURL_VERSIONS = {"1": "HTTP/1.0", "1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2"}


@dataclass(frozen=True)
class Case:
    name: str
    server: str                   # nginx | apache | http10
    path: str
    outcome: str = "ok"
    options: dict[str, str] = field(default_factory=dict)
    curl_args: tuple[str, ...] = ()
    differs: tuple[str, ...] = ()   # the fields where check and curl deliberately differ


CASES = [
    Case("static page", "nginx", "/static/index.html"),
    Case("static page", "apache", "/static/index.html"),
    Case("gzip, chunked", "nginx", "/gz/text.txt"),
    Case("gzip", "apache", "/gz/text.txt"),
    Case("HTTP/1.0 answer", "http10", "/static/index.html"),
    Case("HEAD", "nginx", "/static/index.html", options={"method": "HEAD"}, curl_args=("-I",),
         differs=("bytes",)),
    Case("HEAD", "apache", "/static/index.html", options={"method": "HEAD"}, curl_args=("-I",),
         differs=("bytes",)),
    Case("301 302 303 307 308 chain", "nginx", "/r/301"),
    Case("301 302 303 307 308 chain", "apache", "/r/301"),
    Case("relative Location", "nginx", "/r/relative"),
    Case("redirect to another port", "nginx", "/r/other-port"),
    Case("redirect loop", "nginx", "/r/loop", outcome="too_many_redirects", differs=("redirects",)),
    Case("204", "nginx", "/s/204"),
    Case("304", "nginx", "/s/304"),                     # 304 is in the default 200-399
    Case("404", "nginx", "/s/404", outcome="http_error"),
    Case("404", "apache", "/s/404", outcome="http_error"),
    Case("404", "http10", "/s/404", outcome="http_error"),
    Case("410", "nginx", "/s/410", outcome="http_error"),
    Case("410", "apache", "/s/410", outcome="http_error"),
    Case("500", "nginx", "/s/500", outcome="http_error"),
    Case("503 with Retry-After", "nginx", "/s/503", outcome="http_error"),
    Case("larger than the cap", "nginx", "/large.bin", outcome="too_large",
         options={"max_bytes": "1048576"}, curl_args=("--max-filesize", "1048576"),
         differs=("bytes",)),
    Case("larger than the cap", "apache", "/large.bin", outcome="too_large",
         options={"max_bytes": "1048576"}, curl_args=("--max-filesize", "1048576"),
         differs=("bytes",)),
]


def _running(site: Site, name: str) -> servers.Running:
    return {"nginx": site.nginx, "apache": site.apache, "http10": site.http10}[name]


def referee(url: str, body: Path, *args: str, ca: Path | None = None) -> dict[str, Any]:
    """curl's fields, named as the check's: status, final_url, redirects, bytes, http_version."""
    got = curl(url, "-L", "--max-redirs", "10", "--compressed", "-o", str(body), *args, ca=ca)
    return {
        "status": got["http_code"] or None,
        "final_url": got["url_effective"],
        "redirects": got["num_redirects"],
        # -I writes the headers where the body would go: its body bytes are size_download's.
        "bytes": (got["size_download"] if "-I" in args
                  else body.stat().st_size if body.exists() else 0),
        "http_version": CURL_VERSIONS.get(str(got["http_version"]), got["http_version"]) or None,
        "exitcode": got["exitcode"],
        "errormsg": got.get("errormsg"),
    }


def fields(result: CheckResult) -> dict[str, Any]:
    return {"status": result.status_code, "final_url": result.final_url,
            "redirects": len(result.redirects), "bytes": result.bytes,
            "http_version": result.http_version}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.server}: {c.name}" for c in CASES])
def test_check_and_curl_agree(case: Case, site: Site, checker: Checker, tmp_path: Path) -> None:
    url = _running(site, case.server).url(case.path)
    result = checker.check(url, parse_options({"retries": "1", "deadline": "10", **case.options}))
    assert result.outcome == case.outcome, result.error
    ours = fields(result)
    theirs = referee(url, tmp_path / "body", *case.curl_args)
    for name in ours:
        if name in case.differs:
            continue
        assert ours[name] == theirs[name], f"{name}: urltester {ours[name]!r}, curl {theirs[name]!r}"
    differences = {name: (ours[name], theirs[name]) for name in case.differs}
    _named_differences(case, result, theirs, differences)


def _named_differences(case: Case, result: CheckResult, theirs: dict[str, Any],
                       differences: dict[str, tuple[Any, Any]]) -> None:
    """Each deliberate difference, asserted as what docs/check.md says it is."""
    if "bytes" in differences and case.options.get("method") == "HEAD":
        # A HEAD check reads no body: bytes is null; curl counts the 0 bytes it read.
        assert differences["bytes"] == (None, 0)
        assert result.content_length is not None and result.content_length > 0
    if case.outcome == "too_large":
        # The declared Content-Length is over the cap: the check says too_large without
        # reading (bytes null); curl --max-filesize refuses too (exit 63), having read 0 bytes.
        assert differences["bytes"] == (None, 0) and theirs["exitcode"] == 63
        assert result.content_length == 2 * 1024 * 1024
    if case.outcome == "too_many_redirects":
        # The check follows the 11th redirect far enough to report it; curl stops at 10 (exit 47).
        assert differences["redirects"] == (11, 10) and theirs["exitcode"] == 47


def test_retry_after_is_read_from_nginx(site: Site, checker: Checker) -> None:
    result = checker.check(site.nginx.url("/s/503"), parse_options({"retries": "1"}))
    assert result.headers.get("retry-after") == "1"


def test_chunked_gzip_really_is_chunked(site: Site, checker: Checker) -> None:
    # The gzip case must exercise chunked transfer: nginx compresses on the fly, without a length.
    result = checker.check(site.nginx.url("/gz/text.txt"))
    assert result.headers.get("transfer-encoding") == "chunked"
    assert result.headers.get("content-encoding") == "gzip"
    assert result.content_length is None and result.bytes == len("compress me, please. " * 5000)
