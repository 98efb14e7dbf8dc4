"""The address policy (SSRF): judged at the socket's real address, on every hop."""

from __future__ import annotations

import ipaddress

import pytest

from runner.check.checker import AddressPolicy, Checker
from runner.check.options import parse_options
from runner.check.policy import DEFAULT_POLICY, embedded_ipv4

from .conftest import Server

SHORT = parse_options({"deadline": "2", "retries": "1"})
PRIVATE = AddressPolicy(deny_private=True)


def test_loopback_allowed_by_default(hostile: Server) -> None:
    assert Checker().check(hostile.url("/ok"), SHORT).outcome == "ok"


def test_loopback_blocked_with_deny_private(hostile: Server) -> None:
    result = Checker(PRIVATE).check(hostile.url("/ok"), SHORT)
    assert (result.outcome, result.ok, result.status_code) == ("blocked", False, None)
    assert result.error == "blocked by address policy: 127.0.0.1 (loopback address)"


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::ffff:169.254.169.254]/",
])
def test_metadata_and_unspecified_blocked_by_default(url: str) -> None:
    result = Checker().check(url, SHORT)
    assert result.outcome == "blocked", result.error
    assert result.error.startswith("blocked by address policy: ")
    assert result.elapsed_ms < 1000        # refused before any connect


@pytest.mark.parametrize("host", [
    "2130706433",          # decimal
    "0x7f.0.0.1",          # hex
    "0177.0.0.1",          # octal
    "0x7f000001",
    "127.1",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "[::1]",
    "localhost",
])
def test_other_spellings_of_loopback_blocked(hostile: Server, host: str) -> None:
    result = Checker(PRIVATE).check(f"http://{host}:{hostile.port}/ok", SHORT)
    assert result.outcome == "blocked", result.error


@pytest.mark.parametrize("address", ["10.1.2.3", "172.16.0.1", "192.168.1.1", "100.64.0.1", "fd12::1"])
def test_private_ranges_blocked_with_deny_private(address: str) -> None:
    host = f"[{address}]" if ":" in address else address
    result = Checker(PRIVATE).check(f"http://{host}/", SHORT)
    assert result.outcome == "blocked"


def test_allow_list_overrides(hostile: Server) -> None:
    checker = Checker(AddressPolicy(deny_private=True, allow=("127.0.0.0/8",)))
    assert checker.check(hostile.url("/ok"), SHORT).outcome == "ok"
    # the allow list also overrides the always-denied ranges when an operator says so
    assert AddressPolicy(allow=("169.254.169.254/32",)).refusal(ipaddress.ip_address("169.254.169.254")) is None


def test_redirect_from_allowed_to_blocked_host(hostile: Server) -> None:
    result = Checker().check(hostile.url("/to-metadata"), SHORT)
    assert result.outcome == "blocked"
    assert "169.254.169.254" in result.error
    assert [h["status"] for h in result.hops] == [302, None]


def test_redirect_to_loopback_alias_blocked_when_only_one_address_allowed(hostile: Server) -> None:
    checker = Checker(AddressPolicy(deny_private=True, allow=("127.0.0.1/32",)))
    assert checker.check(hostile.url("/ok"), SHORT).outcome == "ok"
    assert checker.check(f"http://127.0.0.2:{hostile.port}/ok", SHORT).outcome == "blocked"


def test_embedded_ipv4_forms() -> None:
    v4 = ipaddress.IPv4Address("127.0.0.1")
    for text in ("::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "::127.0.0.1"):
        assert embedded_ipv4(ipaddress.ip_address(text)) == v4, text
    assert embedded_ipv4(ipaddress.ip_address("::1")) is None
    assert PRIVATE.refusal(ipaddress.ip_address("64:ff9b::a00:1")) is not None   # NAT64 to 10.0.0.1


def test_bad_allow_entry_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="not a network"):
        AddressPolicy(allow=("10.0.0.0/33",))


def test_no_proxy_from_environment(monkeypatch: pytest.MonkeyPatch, hostile: Server) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://169.254.169.254:3128")
    monkeypatch.setenv("http_proxy", "http://169.254.169.254:3128")
    assert Checker().check(hostile.url("/ok"), SHORT).outcome == "ok"


# Judged by the policy alone: a test must send nothing beyond 127.0.0.0/8, and on code that
# allowed these a check would have tried to connect.
@pytest.mark.parametrize(("text", "why"), [
    ("100.100.100.200", "cloud metadata address (Alibaba Cloud)"),
    ("192.0.0.192", "cloud metadata address (Oracle Cloud)"),
    ("fd00:ec2::254", "cloud metadata address (AWS, IPv6)"),
    ("64:ff9b:1::a9fe:a9fe", "link-local address (cloud metadata)"),       # local-use NAT64, /96
    ("64:ff9b:1:a9fe:a9:fe00::", "link-local address (cloud metadata)"),   # local-use NAT64, /48
    ("::ffff:100.100.100.200", "cloud metadata address (Alibaba Cloud)"),
])
def test_metadata_addresses_are_refused_on_every_worker(text: str, why: str) -> None:
    assert DEFAULT_POLICY.refusal(ipaddress.ip_address(text)) == why


def test_local_use_nat64_is_judged_by_the_ipv4_address_inside() -> None:
    assert DEFAULT_POLICY.refusal(ipaddress.ip_address("64:ff9b:1::808:808")) is None
    assert PRIVATE.refusal(ipaddress.ip_address("64:ff9b:1::808:808")) is None
    assert PRIVATE.refusal(ipaddress.ip_address("64:ff9b:1::a00:1")) == "private address (RFC 1918)"
    assert PRIVATE.refusal(ipaddress.ip_address("64:ff9b:1:7f00:1::")) == "loopback address"


@pytest.mark.parametrize("text", ["192.0.2.1", "198.51.100.7", "203.0.113.9", "192.0.0.1", "2001:db8::1",
                                  "2001:2::1", "100::1", "198.18.0.1"])
def test_deny_private_refuses_every_address_that_is_not_global(text: str) -> None:
    addr = ipaddress.ip_address(text)
    assert not addr.is_global
    assert PRIVATE.refusal(addr) is not None
    assert DEFAULT_POLICY.refusal(addr) is None  # a special-purpose range, not metadata


@pytest.mark.parametrize("text", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_deny_private_still_allows_global_addresses(text: str) -> None:
    assert PRIVATE.refusal(ipaddress.ip_address(text)) is None
