"""TLS on nginx with certificates from the test CA: the check's outcome matches curl's.

curl trusts the same root (``--cacert``); exit 60 is its certificate verification failure,
35 a failed handshake. ``cert_days`` must equal the days left on the earliest-expiring
certificate the server sent, as ``openssl x509 -enddate`` reads it.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from runner.check.checker import Checker
from runner.check.options import parse_options

from . import servers
from .conftest import Site
from .test_http import fields, referee

# case -> (check's outcome, words in the check's error, curl's exit code, words in curl's)
EXPECTED = {
    "valid": ("ok", None, 0, None),
    "expired": ("tls_error", "expired", 60, "expired"),
    "not_yet_valid": ("tls_error", "not yet valid", 60, "not yet valid"),
    "wrong_host": ("tls_error", "mismatch", 60, "no alternative certificate subject name"),
    "self_signed": ("tls_error", "self-signed", 60, "self-signed"),
    "missing_intermediate": ("tls_error", "issuer unknown", 60, "unable to get local issuer"),
    "tls1_0": ("tls_error", "TLS", 35, None),
}


def served_end_dates(port: int, *extra: str) -> list[float]:
    """notAfter of every certificate the server sends, read by openssl x509 -enddate."""
    out = subprocess.run([servers.require("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
                          "-showcerts", *extra], input="", capture_output=True, text=True, timeout=20)
    pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out.stdout, re.S)
    dates = []
    for pem in pems:
        end = subprocess.run([servers.require("openssl"), "x509", "-noout", "-enddate"], input=pem,
                             capture_output=True, text=True, timeout=10, check=True).stdout
        dates.append(ssl.cert_time_to_seconds(end.strip().split("=", 1)[1]))
    return dates


@pytest.mark.parametrize("case", list(EXPECTED))
def test_tls_outcome_matches_curl(case: str, site: Site, checker: Checker, tmp_path: Path) -> None:
    outcome, words, curl_exit, curl_words = EXPECTED[case]
    url = f"https://127.0.0.1:{site.nginx.ports[case]}/static/index.html"
    result = checker.check(url, parse_options({"retries": "1", "deadline": "10"}))
    theirs = referee(url, tmp_path / "body", ca=site.ca)
    assert (result.outcome, theirs["exitcode"]) == (outcome, curl_exit), (result.error, theirs["errormsg"])
    if words:
        assert words in (result.error or ""), result.error
    if curl_words:
        assert curl_words in (theirs["errormsg"] or ""), theirs["errormsg"]
    if outcome == "ok":
        ours = fields(result)
        assert ours == {k: theirs[k] for k in ours}
        assert result.tls["verified"] is True and result.tls["protocol"] in ("TLSv1.2", "TLSv1.3")
    else:
        assert result.status_code is None and theirs["status"] is None
    if case != "tls1_0":      # the system's openssl client will not speak TLS 1.0 either
        dates = served_end_dates(site.nginx.ports[case])
        assert dates, "openssl s_client saw no certificate"
        assert len(dates) == (1 if case in ("self_signed", "missing_intermediate") else 2)
        assert result.cert_days == int((min(dates) - time.time()) / 86400)


def test_tls1_0_server_is_refused_by_both_clients(site: Site) -> None:
    # The server does serve TLS 1.0 (asked at the lowest security level): so the refusal
    # is the clients' minimum version, not a broken server.
    out = subprocess.run([servers.require("openssl"), "s_client", "-connect",
                          f"127.0.0.1:{site.nginx.ports['tls1_0']}", "-tls1",
                          "-cipher", "DEFAULT:@SECLEVEL=0"], input="", capture_output=True,
                         text=True, timeout=20)
    if "Protocol  : TLSv1\n" not in out.stdout and "TLSv1, Cipher" not in out.stdout:
        pytest.skip("the system OpenSSL no longer serves or speaks TLS 1.0: "
                    + (out.stdout + out.stderr).strip().splitlines()[-1][:200])
