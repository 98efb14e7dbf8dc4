"""The address policy: which IP addresses a check may connect to (SSRF defence).

URLs come from import files nobody here wrote, so a check must not be usable to reach
the cloud metadata service or, on workers configured with ``deny_private``, the
worker's own network. The policy judges *IP addresses*, never host names: the check's
transport resolves the name once, asks ``refusal()`` about each address, and connects
only to an allowed one (runner/check/transport.py), so DNS rebinding and spellings such as
``2130706433``, ``0x7f.1``, ``0177.0.0.1`` or ``[::ffff:127.0.0.1]`` change nothing:
they all arrive here as the address the socket would really connect to.

IPv6 addresses that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-
compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, local-use NAT64 ``64:ff9b:1::/48``
at each RFC 6052 prefix length it may be carved into, 6to4 ``2002::/16``) are judged by
the IPv4 address(es) inside them as well as by themselves.

``deny_private`` follows the IANA special-purpose registries as ``ipaddress``'s
``is_global`` knows them (so also the TEST-NETs, 192.0.0.0/24, 2001:db8::/32 ...): the
named ranges below give the reason, ``is_global`` catches whatever they miss.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused on every worker: link-local (where cloud metadata lives), metadata endpoints
# outside link-local, and "unspecified" addresses (0.0.0.0 reaches the local host on Linux).
ALWAYS_DENIED: tuple[tuple[str, str], ...] = (
    ("169.254.0.0/16", "link-local address (cloud metadata)"),
    ("fe80::/10", "link-local address"),
    ("fd00:ec2::254/128", "cloud metadata address (AWS, IPv6)"),
    ("100.100.100.200/32", "cloud metadata address (Alibaba Cloud)"),
    ("192.0.0.192/32", "cloud metadata address (Oracle Cloud)"),
    ("0.0.0.0/8", "unspecified address"),
    ("::/128", "unspecified address"),
    ("224.0.0.0/4", "multicast address"),
    ("ff00::/8", "multicast address"),
    ("255.255.255.255/32", "broadcast address"),
)

# Also refused when the worker runs with deny_private.
PRIVATE_DENIED: tuple[tuple[str, str], ...] = (
    ("127.0.0.0/8", "loopback address"),
    ("::1/128", "loopback address"),
    ("10.0.0.0/8", "private address (RFC 1918)"),
    ("172.16.0.0/12", "private address (RFC 1918)"),
    ("192.168.0.0/16", "private address (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("fc00::/7", "unique-local address"),
    ("198.18.0.0/15", "benchmarking network"),
    ("240.0.0.0/4", "reserved address"),
    ("192.0.0.0/24", "IETF protocol assignment address"),
    ("192.0.2.0/24", "documentation address (TEST-NET-1)"),
    ("198.51.100.0/24", "documentation address (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation address (TEST-NET-3)"),
    ("2001:db8::/32", "documentation address"),
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
# RFC 6052 2.2: where the 4 bytes of the IPv4 address sit for each prefix length that can
# be carved out of 64:ff9b:1::/48 (byte 8, bits 64-71, is always skipped).
_RFC6052_BYTES = ((6, 7, 9, 10), (7, 9, 10, 11), (9, 10, 11, 12), (12, 13, 14, 15))
_COMPAT = ipaddress.IPv6Network("::/96")


def _compile(table: tuple[tuple[str, str], ...]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(net), why) for net, why in table)


_ALWAYS = _compile(ALWAYS_DENIED)
_PRIVATE = _compile(PRIVATE_DENIED)


def parse_network(text: str) -> IPNetwork:
    """``10.1.0.0/16`` or a single address; raises ValueError with a readable message."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a network (CIDR such as 10.0.0.0/8) or address") from None


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, if it is one of the forms that reach it
    (for local-use NAT64, the /96 reading; :func:`embedded_ipv4s` gives every reading)."""
    found = embedded_ipv4s(addr)
    return found[-1] if found else None


def embedded_ipv4s(addr: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """Every IPv4 address an IPv6 address may carry to a translator or tunnel."""
    if isinstance(addr, ipaddress.IPv4Address):
        return ()
    if addr.ipv4_mapped is not None:
        return (addr.ipv4_mapped,)
    if addr.sixtofour is not None:
        return (addr.sixtofour,)
    if addr in _LOCAL_NAT64:
        # The translator's prefix length is not in the address: judge every reading, except
        # those that find only zeros (that layout carries nothing there).
        packed = addr.packed
        readings = (ipaddress.IPv4Address(bytes(packed[i] for i in where)) for where in _RFC6052_BYTES)
        return tuple(v4 for v4 in readings if int(v4) >> 24)
    if addr in _NAT64 or (addr in _COMPAT and int(addr) > 1):
        return (ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF),)
    return ()


def parse_address(text: str) -> IPAddress:
    """An address as getaddrinfo returns it (IPv6 may carry ``%scope``)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses a check may connect to. A worker setting, not a per-job option.

    ``deny_private`` adds loopback, RFC 1918, CGNAT and unique-local ranges to the
    always-refused link-local, metadata and unspecified ranges. ``allow`` lists networks
    (CIDR strings) that are allowed even when a rule above refuses them.
    """

    deny_private: bool = False
    allow: tuple[str, ...] = ()
    _nets: tuple[IPNetwork, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Validate at construction so a bad worker setting fails at startup.
        object.__setattr__(self, "_nets", tuple(parse_network(n) for n in self.allow))

    @cached_property
    def _rules(self) -> tuple[tuple[IPNetwork, str], ...]:
        return _ALWAYS + _PRIVATE if self.deny_private else _ALWAYS

    def _allowed_explicitly(self, addr: IPAddress) -> bool:
        return any(addr.version == net.version and addr in net for net in self._nets)

    def refusal(self, addr: IPAddress) -> str | None:
        """Why ``addr`` may not be connected to, or None when it may."""
        inner = embedded_ipv4s(addr)
        if self._allowed_explicitly(addr) or any(self._allowed_explicitly(v4) for v4 in inner):
            return None
        for candidate in (addr, *inner):
            for net, why in self._rules:
                if candidate.version == net.version and candidate in net:
                    return why
        if self.deny_private:
            # What carries an IPv4 address reaches that address: judge it by what it reaches.
            for candidate in inner or (addr,):
                if not candidate.is_global:
                    return "not a globally routable address (special-purpose range)"
        return None


DEFAULT_POLICY = AddressPolicy()
