"""The Guard's last word, in process: an error that escaped every handler is a 500 with the
security headers and one log line; a database away at the token lookup is a 503."""

from __future__ import annotations

import logging

from starlette.testclient import TestClient

from db import StoreUnavailable
from runner.api.config import DEFAULT_CONFIG
from runner.api.guard import Guard
from runner.metrics import ApiMetrics


async def broken(scope, receive, send) -> None:
    raise RuntimeError("a bug")


def guarded(verify) -> TestClient:
    return TestClient(Guard(broken, config=DEFAULT_CONFIG, metrics=ApiMetrics(), verify=verify),
                      raise_server_exceptions=True)


def test_a_500_carries_the_security_headers_and_logs_one_line(caplog) -> None:
    with caplog.at_level(logging.ERROR, "urltester.api"):
        r = guarded(lambda token: object()).get("/api/v1/jobs", headers={"Authorization": "Bearer ut_x"})
    assert r.status_code == 500 and r.json() == {"detail": "internal error"}
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert [rec.getMessage() for rec in caplog.records] == ["internal error on GET unmatched: RuntimeError"]
    assert all(rec.exc_info is None for rec in caplog.records)


def test_a_database_away_at_the_token_lookup_is_503_with_retry_after() -> None:
    def verify(token: str) -> object:
        raise StoreUnavailable("connection refused")

    r = guarded(verify).get("/api/v1/jobs", headers={"Authorization": "Bearer ut_x"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_an_unknown_method_is_one_label_value() -> None:
    metrics = ApiMetrics()
    client = TestClient(Guard(broken, config=DEFAULT_CONFIG, metrics=metrics, verify=lambda t: None))
    for method in ("FOO", "BAR", "XYZZY", "PROPFIND"):
        client.request(method, "/x")
    text = metrics.render()[0].decode()
    series = [line for line in text.splitlines() if line.startswith("urltester_http_requests_total{")]
    assert series == ['urltester_http_requests_total{method="other",route="unmatched",status="401"} 4.0']
