"""TLS: details of the certificate chain, and errors that say why in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runner.check.checker import Checker
from runner.check.options import parse_options

from .conftest import Certs, Server

SHORT = parse_options({"deadline": "3"})
INSECURE = parse_options({"deadline": "3", "insecure": "true"})


def test_verified_certificate_details(certs: Certs, tls_servers: dict[str, Server]) -> None:
    checker = Checker(ca_bundle=str(certs.ca))
    result = checker.check(tls_servers["good"].url("/ok"), SHORT)
    assert result.outcome == "ok", result.error
    tls = result.tls
    assert tls is not None
    assert tls["verified"] is True
    assert tls["protocol"].startswith("TLSv1.")
    assert (tls["subject"], tls["issuer"]) == ("localhost", "urltester test CA")
    assert "localhost" in tls["san"]
    assert tls["days_left"] in (19, 20)
    assert result.cert_days == tls["chain_days_left"]
    assert result.tls_ms is not None and result.tls_ms > 0
    again = checker.check(tls_servers["good"].url("/ok"), SHORT)
    assert again.reused is True and again.tls_ms is None and again.tls["subject"] == "localhost"


def test_expired_certificate(certs: Certs, tls_servers: dict[str, Server], timed) -> None:
    result, took = timed(Checker(ca_bundle=str(certs.ca)), tls_servers["expired"].url("/ok"), SHORT)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    today = datetime.now(UTC).date().isoformat()
    assert result.outcome == "tls_error"
    assert result.error in (f"TLS: certificate expired on {yesterday}", f"TLS: certificate expired on {today}")
    assert result.attempts == 1                 # not transient
    assert result.tls["verified"] is False and result.tls["subject"] == "localhost"
    assert result.cert_days is not None and result.cert_days <= 0
    assert took < 3


def test_self_signed_certificate(tls_servers: dict[str, Server]) -> None:
    result = Checker().check(tls_servers["self_signed"].url("/ok"), SHORT)
    assert result.outcome == "tls_error"
    assert result.error == "TLS: self-signed certificate"


def test_unknown_issuer(tls_servers: dict[str, Server]) -> None:
    result = Checker().check(tls_servers["good"].url("/ok"), SHORT)   # test CA not trusted
    assert result.outcome == "tls_error"
    assert "issuer" in result.error


def test_host_name_mismatch(certs: Certs, tls_servers: dict[str, Server]) -> None:
    result = Checker(ca_bundle=str(certs.ca)).check(tls_servers["wrong_name"].url("/ok"), SHORT)
    assert result.outcome == "tls_error"
    assert result.error == "TLS: certificate does not match the host name (certificate is for other.example)"


def test_insecure_still_records_details(tls_servers: dict[str, Server]) -> None:
    result = Checker().check(tls_servers["expired"].url("/ok"), INSECURE)
    assert result.outcome == "ok"
    assert result.tls["verified"] is False
    assert result.cert_days is not None and result.cert_days <= 0


def test_cert_days_condition(certs: Certs, tls_servers: dict[str, Server]) -> None:
    opts = parse_options({"deadline": 3, "condition": "cert_days > 25"})
    result = Checker(ca_bundle=str(certs.ca)).check(tls_servers["good"].url("/ok"), opts)
    assert result.outcome == "assertion_failed"
    assert result.error.startswith("condition failed: cert_days > 25 (cert_days was ")


def test_https_to_http_redirect_keeps_tls_of_the_url_asked_for(
        certs: Certs, tls_servers: dict[str, Server], hostile: Server) -> None:
    url = tls_servers["good"].url("/goto?to=" + hostile.url("/ok"))
    result = Checker(ca_bundle=str(certs.ca)).check(url, SHORT)
    assert result.outcome == "ok"
    assert result.final_url == hostile.url("/ok")
    assert result.tls["subject"] == "localhost" and result.cert_days is not None
    assert result.hops[0]["tls_ms"] is not None and result.hops[1]["tls_ms"] is None


def test_tls_trickled_body_hits_the_deadline(certs: Certs, tls_servers: dict[str, Server], timed) -> None:
    result, took = timed(Checker(ca_bundle=str(certs.ca)), tls_servers["good"].url("/trickle-body"),
                         parse_options({"deadline": 2}))
    assert result.outcome == "deadline_exceeded"
    assert result.error == "deadline of 2 s exceeded while reading the body"
    assert took <= 2 + 1


def test_https_to_a_port_that_speaks_no_tls(garbage_port: Server, timed) -> None:
    url = f"https://127.0.0.1:{garbage_port.port}/"
    result, took = timed(Checker(), url, parse_options({"deadline": 2}))
    assert result.outcome == "tls_error"
    assert result.error == "TLS: the server does not speak TLS on this port (wrong version number)"
    assert result.tls is None
    assert took <= 2 + 1


def test_https_to_a_silent_port(silent_port: Server, timed) -> None:
    url = f"https://127.0.0.1:{silent_port.port}/"
    result, took = timed(Checker(), url, parse_options({"deadline": 2}))
    assert result.outcome in ("read_timeout", "deadline_exceeded")
    assert "TLS handshake" in result.error
    assert took <= 2 + 1
