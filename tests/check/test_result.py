"""What a result says: assertions, conditions, headers sent, secrets masked, JSON-safe."""

from __future__ import annotations

import importlib.metadata
import json

from runner.check.checker import OUTCOMES, Checker, clean_text, extract_title
from runner.check.options import parse_options

from .conftest import Server

SHORT = {"deadline": "2"}


def opts(**raw: object):
    return parse_options({**SHORT, **raw})


def test_result_is_json_safe_and_has_every_field(checker: Checker, hostile: Server) -> None:
    data = checker.check(hostile.url("/html"), opts()).as_dict()
    assert json.loads(json.dumps(data)) == data
    for name in ("outcome", "ok", "status_code", "final_url", "total_ms", "attempts", "error",
                 "bytes", "content_type", "title", "reason", "http_version", "redirects", "ip",
                 "reused", "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "transfer_ms", "hops",
                 "content_length", "tls", "cert_days", "flaky", "headers"):
        assert name in data
    assert data["outcome"] in OUTCOMES and data["title"] == "Hi"


def test_unexpected_status_is_http_error(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/missing"), opts())
    assert (result.outcome, result.ok, result.status_code) == ("http_error", False, 404)
    assert result.error == "HTTP 404 Not Found (expected 200-399)"
    assert result.attempts == 1
    assert checker.check(hostile.url("/missing"), opts(expect_status="404")).ok


def test_body_assertions(checker: Checker, hostile: Server) -> None:
    assert checker.check(hostile.url("/ok"), opts(body_contains="OK")).ok
    result = checker.check(hostile.url("/ok"), opts(body_contains="Welcome", body_excludes="hello"))
    assert result.outcome == "assertion_failed"
    assert result.failed_conditions == ['body does not contain "Welcome"', 'body contains "hello"']
    assert result.error == 'body does not contain "Welcome"; body contains "hello"'


def test_body_assertion_sees_the_whole_capped_body(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/needle-at-end"), opts(body_contains="NEEDLE"))
    assert result.ok and result.bytes == 300006
    result = checker.check(hostile.url("/needle-at-end"), opts(condition='body contains "NEEDLE"'))
    assert result.ok
    assert checker.check(hostile.url("/needle-at-end"), opts()).bytes == 300006


def test_max_ms(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/slow"), parse_options({"deadline": 5, "max_ms": 100}))
    assert result.outcome == "assertion_failed"
    assert result.error.startswith("took ") and result.error.endswith("more than max_ms 100")


def test_conditions(checker: Checker, hostile: Server) -> None:
    good = opts(condition=["status in 2xx", "total_ms < 5000", 'body contains "OK"',
                           "header.content-type == text/plain", "bytes >= 5", "redirects == 0",
                           "ttfb_ms >= 0", 'ip == "127.0.0.1"', "attempts == 1"])
    assert checker.check(hostile.url("/ok"), good).ok
    bad = opts(condition=["status == 201", 'body not contains "OK"', "cert_days > 1"])
    result = checker.check(hostile.url("/ok"), bad)
    assert result.outcome == "assertion_failed"
    assert result.failed_conditions == [
        "condition failed: status == 201 (status was 200)",
        'condition failed: body not contains "OK"',
        "cert_days > 1: cert_days is not available",
    ]


def test_conditions_after_redirects(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/to-ok"), opts(condition="redirects == 1"))
    assert result.ok


def test_headers_sent_and_user_agent(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/echo"), opts(header="X-Probe: 42"))
    assert result.ok
    assert result.bytes and result.bytes > 0
    body = checker.check(hostile.url("/echo"), opts(header="X-Probe: 42", body_contains="X-Probe: 42"))
    assert body.ok, body.error
    # The installed version, not a constant: the same string `runner --version` prints.
    version = importlib.metadata.version("urltester")
    ua = checker.check(hostile.url("/echo"), opts(body_contains=f"User-Agent: urltester/{version}\r\n"))
    assert ua.ok, ua.error


def test_credentials_used_but_never_shown(checker: Checker, hostile: Server) -> None:
    url = f"http://alice:s3cret@127.0.0.1:{hostile.port}/echo"
    result = checker.check(url, opts(body_contains="Authorization: Basic"))
    assert result.ok, result.error
    dumped = json.dumps(result.as_dict())
    assert "s3cret" not in dumped
    assert result.url == f"http://alice:***@127.0.0.1:{hostile.port}/echo"
    failed = checker.check("http://alice:s3cret@no-such-host.invalid/", opts())
    assert "s3cret" not in json.dumps(failed.as_dict())


def test_authorization_header_dropped_on_cross_host_redirect(checker: Checker, hostile: Server) -> None:
    target = f"http://localhost:{hostile.port}/echo"
    url = hostile.url(f"/goto?to={target}")
    result = checker.check(url, opts(header="Authorization: Bearer t0ken", body_excludes="t0ken"))
    assert result.ok, result.error
    assert result.final_url == target


def test_cookies_do_not_leak_between_checks(checker: Checker, hostile: Server) -> None:
    session = checker._session()
    session.cookies.set("leftover", "1", domain="127.0.0.1")
    result = checker.check(hostile.url("/echo"), opts(body_excludes="leftover"))
    assert result.ok, result.error


def test_bad_urls_are_results_not_exceptions(checker: Checker) -> None:
    for url in ("ftp://example.com/", "not a url", "http://[::1", "http:///nohost"):
        result = checker.check(url, opts())
        assert result.outcome == "invalid_response", (url, result.error)
        assert result.error.startswith("invalid URL")


def _strings(value: object):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def test_server_text_never_carries_escapes(checker: Checker, hostile: Server) -> None:
    for path in ("/to-escape", "/title"):
        data = checker.check(hostile.url(path), opts()).as_dict()
        for text in _strings(data):
            assert "\x1b" not in text and "\x07" not in text, (path, text)


def test_clean_text_and_title() -> None:
    assert clean_text("a\x1b[2Jb\x07\u202eC\n d", 100) == "a [2Jb C d"
    assert clean_text("x" * 20, 10) == "x" * 9 + "…"
    assert extract_title(b"<html><TITLE lang=en>A &lt;b&gt; &amp; c</TITLE>", "utf-8") == "A <b> & c"
    assert extract_title(b"<title>never closed" + b"z" * 100000, "utf-8").startswith("never closed")
    assert extract_title(b"<titles>x</titles>", "utf-8") is None
    assert len(extract_title(b"<title>" * 50000, "utf-8")) == 300   # RCDATA: text, capped
