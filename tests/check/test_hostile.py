"""Hostile servers: each gets a correct outcome within its deadline, with memory bounded."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from runner.check.checker import Checker
from runner.check.options import parse_options

from .conftest import Server

SLACK = 1.0          # seconds a check may run past its deadline (the contract)
SHORT = parse_options({"deadline": "2"})


def test_ok_and_phases(checker: Checker, hostile: Server, timed) -> None:
    result, took = timed(checker, hostile.url("/ok"), SHORT)
    assert (result.outcome, result.ok, result.status_code) == ("ok", True, 200)
    assert result.bytes == len(b"hello OK world")
    assert result.ip == "127.0.0.1" and result.reused is False
    assert result.http_version == "HTTP/1.1" and result.reason == "OK"
    assert result.tls_ms is None and result.tls is None and result.cert_days is None
    for phase in ("dns_ms", "connect_ms", "ttfb_ms", "transfer_ms", "total_ms"):
        assert getattr(result, phase) is not None and getattr(result, phase) >= 0
    assert result.total_ms >= result.ttfb_ms
    assert took < 2
    again = checker.check(hostile.url("/ok"), SHORT)
    assert again.reused is True and again.connect_ms == 0


def test_redirect_loop(checker: Checker, hostile: Server, timed) -> None:
    result, took = timed(checker, hostile.url("/loop"), parse_options({"deadline": 2, "max_redirects": 5}))
    assert result.outcome == "too_many_redirects"
    assert result.error == "more than 5 redirects"
    assert len(result.redirects) == 6 and len(result.hops) == 6
    assert took < 2 + SLACK


def test_redirect_followed_and_recorded(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/to-ok"), SHORT)
    assert result.outcome == "ok"
    assert result.redirects == [{"status": 301, "url": hostile.url("/ok")}]
    assert result.final_url == hostile.url("/ok")
    assert [h["status"] for h in result.hops] == [301, 200]


def test_redirect_not_followed_with_zero(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/loop"), parse_options({"max_redirects": 0}))
    assert (result.outcome, result.status_code, result.redirects) == ("ok", 302, [])


@pytest.mark.parametrize(("path", "phase"), [
    ("/trickle-headers", "while waiting for the response headers"),
    ("/trickle-body", "while reading the body"),
])
def test_trickle_hits_the_deadline(checker: Checker, hostile: Server, timed, path: str, phase: str) -> None:
    result, took = timed(checker, hostile.url(path), SHORT)
    assert result.outcome == "deadline_exceeded", result.error
    assert result.error == f"deadline of 2 s exceeded {phase}"
    assert result.attempts == 1
    assert took <= 2 + SLACK


def test_one_byte_a_second_with_one_attempt(checker: Checker, hostile: Server, timed) -> None:
    # retries 1: the per-read timeout is the whole deadline, so only the deadline ends it
    result, took = timed(checker, hostile.url("/trickle-body"), parse_options({"deadline": 2, "retries": 1}))
    assert result.outcome == "deadline_exceeded"
    assert result.status_code == 200 and result.bytes is not None and 1 <= result.bytes < 10   # what arrived
    assert took <= 2 + SLACK


def sent_by(log: list[tuple[float, int]], moment: float) -> int:
    """Bytes a trickling target had sent by ``moment`` (its send log: (time, bytes so far))."""
    return max((sent for at, sent in log if at <= moment), default=0)


def test_a_chunked_body_trickled_past_the_deadline_counts_the_bytes_that_came(checker: Checker, target) -> None:
    # A real HTTP server (stdlib) sends 4 bytes a chunk every 0.2 s and never ends the body.
    started = time.monotonic()
    result = checker.check(target.url("/trickle-chunked?key=check"), parse_options({"deadline": 2, "retries": 1}))
    assert result.outcome == "deadline_exceeded"
    assert result.error == "deadline of 2 s exceeded while reading the body"
    before = sent_by(target.sent["check"], started + 2)
    assert result.bytes is not None and result.bytes > 0
    assert before - 4 <= result.bytes <= before + 4, (result.bytes, target.sent["check"])


def test_a_negative_chunk_size_is_the_servers_fault_not_ours(checker: Checker, hostile: Server, caplog) -> None:
    with caplog.at_level("ERROR"):
        result = checker.check(hostile.url("/negative-chunk"), parse_options({"retries": 1}))
    assert result.outcome == "invalid_response"
    assert result.error == "malformed chunked body (a chunk size that is not a size)"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # no traceback of "our bug"


def test_endless_body_is_too_large_at_the_cap(checker: Checker, hostile: Server, timed) -> None:
    result, took = timed(checker, hostile.url("/endless"), parse_options({"deadline": 2, "max_bytes": "256k"}))
    assert result.outcome == "too_large"
    assert result.bytes == 256 * 1024
    assert "more than max_bytes 262144" in result.error
    assert took < 2 + SLACK


def test_declared_length_over_cap_is_too_large_without_reading(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/large"), parse_options({"max_bytes": "1000"}))
    assert result.outcome == "too_large"
    assert result.content_length == 5000 and result.bytes is None
    assert "declares 5000 bytes" in result.error


def test_gzip_bomb_never_inflates_past_the_cap(checker: Checker, hostile: Server, timed) -> None:
    checker.check(hostile.url("/gzip-bomb"), parse_options({"max_bytes": "1k"}))   # builds the bomb
    tracemalloc.start()
    try:
        result, took = timed(checker, hostile.url("/gzip-bomb"), parse_options({"deadline": 5}))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.outcome == "too_large"
    assert result.bytes == 1024 * 1024
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes"
    assert took < 5 + SLACK


def test_corrupt_gzip_is_invalid(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/bad-gzip"), SHORT)
    assert (result.outcome, result.error) == ("invalid_response", "the body could not be decompressed")


def test_64_kib_of_headers_are_read(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/big-headers"), SHORT)
    assert result.outcome == "ok"
    assert len(result.headers) <= 64


def test_one_header_line_too_long_is_invalid(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/huge-header-line"), SHORT)
    assert result.outcome == "invalid_response"
    assert "header line is too long" in result.error


def test_port_that_speaks_no_http(checker: Checker, garbage_port: Server, timed) -> None:
    result, took = timed(checker, garbage_port.url("/"), SHORT)
    assert result.outcome == "invalid_response"
    assert "did not answer with HTTP" in result.error
    assert took < 2 + SLACK


def test_reset_mid_body_is_retried_then_invalid(checker: Checker, hostile: Server, timed) -> None:
    result, took = timed(checker, hostile.url("/reset"), parse_options({"deadline": 3}))
    assert result.outcome == "invalid_response"
    assert result.error == "connection reset by the server while reading the body"
    assert result.attempts == 3 and not result.flaky
    assert [r["outcome"] for r in result.retried] == ["invalid_response"] * 2
    assert took < 3 + SLACK


def test_refused_port(checker: Checker, refused_port: int, timed) -> None:
    result, took = timed(checker, f"http://127.0.0.1:{refused_port}/", SHORT)
    assert result.outcome == "connect_refused"
    assert result.error == f"connection refused by 127.0.0.1 port {refused_port}"
    assert result.attempts == 1          # not transient: not retried
    assert took < 2


def test_unresolvable_name(checker: Checker, timed) -> None:
    result, took = timed(checker, "http://no-such-host.invalid/", SHORT)
    assert result.outcome == "dns_error"
    assert result.error.startswith("DNS: ")
    assert "no-such-host.invalid" in result.error
    assert took < 2 + SLACK


def test_503_then_200_is_flaky(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/flaky?case=1"), parse_options({"deadline": 5}))
    assert (result.outcome, result.status_code, result.attempts, result.flaky) == ("ok", 200, 2, True)
    assert result.retried == [{"outcome": "http_error", "error": "HTTP 503 Service Unavailable"}]


def test_retry_after_as_an_http_date_is_honoured(checker: Checker, hostile: Server, timed) -> None:
    # Retry-After: <IMF-fixdate 2 s ahead>; without it the first backoff is about 0.25 s.
    result, took = timed(checker, hostile.url("/flaky-date?case=1"), parse_options({"deadline": 8}))
    assert (result.outcome, result.attempts, result.flaky) == ("ok", 2, True)
    assert took >= 0.9           # the date has one-second resolution: 1 to 2 s of wait


def test_retry_after_forms() -> None:
    from email.utils import formatdate

    from runner.check.checker import _retry_after

    assert _retry_after({"retry-after": "7"}) == 7.0
    assert 25 <= _retry_after({"retry-after": formatdate(time.time() + 30, usegmt=True)}) <= 30
    assert _retry_after({"retry-after": "Sun, 06 Nov 1994 08:49:37 GMT"}) == 0.0    # past: now
    assert _retry_after({"retry-after": "Sunday, 06-Nov-94 08:49:37 GMT"}) == 0.0   # RFC 850 form
    assert _retry_after({"retry-after": formatdate(time.time() + 7200, usegmt=True)}) is None
    assert _retry_after({"retry-after": "soon"}) is None


def test_503_until_attempts_run_out(checker: Checker, hostile: Server, timed) -> None:
    result, took = timed(checker, hostile.url("/down"), parse_options({"deadline": 3}))
    assert (result.outcome, result.status_code, result.attempts) == ("http_error", 503, 3)
    assert result.error == "HTTP 503 Service Unavailable (expected 200-399)"
    assert took < 3 + SLACK


def test_503_expected_is_not_retried(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/down"), parse_options({"expect_status": "503"}))
    assert (result.outcome, result.attempts) == ("ok", 1)


def test_silent_server_is_a_read_timeout_and_retried(checker: Checker, hostile: Server, timed) -> None:
    # deadline 2 s, 3 attempts: each socket wait is capped at max(1 s, 2/3 s) = 1 s
    result, took = timed(checker, hostile.url("/slow"), parse_options({"deadline": 2}))
    assert result.outcome in ("read_timeout", "deadline_exceeded")
    assert result.attempts >= 1
    assert took <= 2 + SLACK


def test_title_with_markup_and_escapes_is_plain_text(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/title"), SHORT)
    assert result.outcome == "ok"
    assert result.title == "[bold red]Sale[/bold red] [31mnow [0m & [link=http://x]here[/link]"
    assert "\x1b" not in result.title


def test_head_reads_no_body(checker: Checker, hostile: Server) -> None:
    result = checker.check(hostile.url("/ok"), parse_options({"method": "HEAD"}))
    assert (result.outcome, result.method, result.bytes, result.content_length) == ("ok", "HEAD", None, 12345)


def test_threads_share_one_checker(hostile: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    checker = Checker()
    paths = ["/ok", "/html", "/to-ok", "/missing"] * 10
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: (p, checker.check(hostile.url(p), SHORT)), paths))
    for path, result in results:
        expected = "http_error" if path == "/missing" else "ok"
        assert result.outcome == expected, (path, result.error)
        assert result.final_url.endswith("/ok" if path == "/to-ok" else path)
    checker.close()


def test_many_trickles_at_once_all_stop_in_time(hostile: Server) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    checker = Checker()
    t0 = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda p: checker.check(hostile.url(p), SHORT),
                                ["/trickle-headers", "/trickle-body", "/endless"] * 2))
    assert time.monotonic() - t0 <= 2 + SLACK
    assert [r.outcome for r in results] == ["deadline_exceeded", "deadline_exceeded", "too_large"] * 2
    checker.close()


def test_connect_timeout_is_retried_within_the_deadline(monkeypatch, hostile: Server, timed) -> None:
    import time

    from runner.check import transport as timing

    def slow_connect(self, address):   # a black-holed address: the SYN is never answered
        time.sleep(min(self.gettimeout() or 0, 5))
        raise TimeoutError("timed out")

    monkeypatch.setattr(timing.TimedSocket, "connect", slow_connect)
    checker = Checker()
    result, took = timed(checker, hostile.url("/ok"), parse_options({"deadline": 3}))
    assert result.outcome in ("connect_timeout", "deadline_exceeded"), result.error
    assert result.attempts >= 2
    assert result.retried[0]["outcome"] == "connect_timeout"
    assert result.retried[0]["error"] == f"connect to 127.0.0.1 port {hostile.port} timed out after 1 s"
    assert took <= 3 + SLACK


def test_a_resolver_that_never_answers_is_bounded(monkeypatch, timed) -> None:
    import socket
    import time

    real = socket.getaddrinfo

    def stuck(host, *args, **kwargs):
        if host == "stuck.example":
            time.sleep(4)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stuck)
    result, took = timed(Checker(), "http://stuck.example/", parse_options({"deadline": 2}))
    assert result.outcome in ("dns_error", "deadline_exceeded")
    assert result.retried and result.retried[0]["error"] == "DNS: no answer within 1 s (stuck.example)"
    assert took <= 2 + SLACK


def test_each_retry_asks_the_hosts_pace_first_and_none_is_made_without_leave(hostile: Server) -> None:
    """A retry is one more request to the host: the checker asks ``before_retry`` (the
    fleet's pacing) first; told no, it makes none and reports the attempts it made."""
    asked: list[str] = []
    no = Checker(before_retry=lambda url, left: asked.append(url) or False)
    try:
        result = no.check(hostile.url("/reset"), parse_options({"deadline": 3}))
    finally:
        no.close()
    assert result.outcome == "invalid_response" and result.attempts == 1
    assert asked == [hostile.url("/reset")]
    yes = Checker(before_retry=lambda url, left: asked.append(url) or True)
    try:
        result = yes.check(hostile.url("/reset"), parse_options({"deadline": 3}))
    finally:
        yes.close()
    assert result.attempts == 3 and len(asked) == 3  # one ask per retry
