"""Validating and normalising the URLs users submit.

A URL is accepted only if a check could use it; each refusal says why in a few words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

import idna

from runner.errors import InvalidURL
from runner.text import mask_url, url_password

MAX_URL_LENGTH = 4096
_SCHEMES = ("http", "https")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")
# Lone surrogates: from a JSON "\ud800" escape, or from argv bytes that are not UTF-8
# (Python keeps ``\xff`` as U+DCFF). No URL can carry them, and nothing can encode them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# A scheme-less URL starts with a host: ASCII host characters or any non-ASCII letter (IDN).
_HOSTLIKE = re.compile(r"^(?:[A-Za-z0-9\-._~%\[\]:@]|[^\x00-\x7f])+([/?].*)?$")


@dataclass(frozen=True)
class Rejected:
    """An input that is not a usable URL, with the reason and where it came from."""

    text: str
    reason: str
    where: str | None = None

    def __str__(self) -> str:
        shown = mask_url(self.text) if len(self.text) <= 200 else mask_url(self.text[:200]) + "…"
        prefix = f"{self.where}: " if self.where else ""
        return f"{prefix}{self.reason}: {shown!r}"


# A URL already in the form normalise() returns: lowercase http(s) scheme and host, no
# userinfo, no fragment, no default port, printable ASCII. Such a URL is returned as it is,
# skipping urlsplit and IDNA (four times faster; tests/batch check both paths agree).
_CANONICAL = re.compile(
    r"(https?)://((?:[a-z0-9_\-]{1,63}\.)*[a-z0-9_\-]{1,63})(?::([1-9][0-9]{0,4}))?"
    r"/[\x21\x22\x24-\x3e\x40-\x7e]*(?:\?[\x21\x22\x24-\x7e]+)?"
)


def _canonical(text: str) -> bool:
    m = _CANONICAL.fullmatch(text)
    if m is None or len(text) > MAX_URL_LENGTH or len(m.group(2)) > 253 or "xn--" in m.group(2):
        return False  # (an A-label is checked the long way)
    port = m.group(3)
    if port is None:
        return True
    value = int(port)
    return value <= 65535 and (m.group(1), value) not in (("http", 80), ("https", 443))


def normalise(text: str) -> str:
    """A canonical form of a URL a user typed, or InvalidURL saying what is wrong.

    ``example.com/x`` becomes ``https://example.com/x``; the scheme and host are lowercased,
    the host IDNA-encoded (UTS #46, as browsers do), a default port dropped, an empty path made ``/`` and the
    fragment (never sent to a server) removed.
    """
    if _canonical(text):
        return text  # most of a batch import: already in this form
    return _parse(text)


def _parse(text: str) -> str:
    """:func:`normalise` the long way: split, check and rebuild the URL."""
    raw = text.strip()
    if not raw:
        raise InvalidURL("empty URL")
    if len(raw) > MAX_URL_LENGTH:
        raise InvalidURL(f"URL longer than {MAX_URL_LENGTH} characters ({len(raw)})")
    if _BAD_CHARS.search(raw):
        raise InvalidURL("URL contains spaces or control characters")
    bad = _SURROGATE.search(raw)
    if bad is not None:
        raise InvalidURL(not_unicode(bad.group()))
    if "://" not in raw:
        scheme_match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*):", raw)
        if scheme_match and not re.match(r"^[^:/]+:\d+(/|$)", raw):
            raise InvalidURL(f"unsupported scheme {scheme_match.group(1).lower()!r} (use http or https)")
        if not _HOSTLIKE.match(raw):
            raise InvalidURL("not a URL")
        raw = "https://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        if url_password(raw) is not None:  # the "port" urlsplit quotes is part of the password
            raise InvalidURL("malformed URL (a password with '#', '?' or '/' must be percent-encoded)") from None
        raise InvalidURL(f"malformed URL ({exc})") from exc
    if "\\" in parts.netloc:
        # http://a:1\@b/: curl and browsers end the host at the backslash (a), urlsplit and
        # urllib3 read "a:1\" as a user and password (b). Which host is checked would depend
        # on the reader: refuse rather than store one host and show another.
        raise InvalidURL("backslash in the host part (readers disagree on the host: write / or %5C)")
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise InvalidURL(f"unsupported scheme {scheme!r} (use http or https)")
    host = parts.hostname
    if not host:
        raise InvalidURL("no host")
    host = _encode_host(host)
    if port == 0:
        raise InvalidURL("port 0 is not a port")
    if (scheme, port) in (("http", 80), ("https", 443)):
        port = None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username is not None or parts.password is not None:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        netloc = f"{userinfo}@{netloc}"
    path = parts.path or "/"
    return urlunsplit(SplitResult(scheme, netloc, path, parts.query, ""))


def not_unicode(char: str) -> str:
    """Why text holding the lone surrogate ``char`` is refused, in a user's terms."""
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: a byte that was not UTF-8
        return f"not valid UTF-8 (byte 0x{code - 0xDC00:02x})"
    return f"not valid Unicode (lone surrogate U+{code:04X})"


def _encode_host(host: str) -> str:
    host = host.rstrip(".").lower() if host not in (".",) else host
    if not host:
        raise InvalidURL("no host")
    if ":" in host:  # IPv6 literal: urlsplit already unbracketed it
        return host
    if host.isascii():
        encoded = host       # already the wire form (idna would refuse the "_" some hosts use)
    else:
        # UTS #46 (IDNA 2008, non-transitional), as browsers do: faß.de is xn--fa-hia.de,
        # where Python's "idna" codec (IDNA 2003) would map it to fass.de, another domain.
        try:
            encoded = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidURL(f"host {host!r} is not a valid name ({exc})") from exc
        except UnicodeError as exc:
            raise InvalidURL(f"host {host!r} is not a valid name") from exc
    if len(encoded) > 253:
        raise InvalidURL("host name longer than 253 characters")
    for label in encoded.split("."):
        if not label or len(label) > 63 or not re.fullmatch(r"[a-z0-9_\-]+", label):
            raise InvalidURL(f"host {host!r} is not a valid name")
        if label.startswith("xn--"):
            try:
                decoded = label[4:].encode("ascii").decode("punycode")
            except UnicodeError:
                decoded = ""
            # An A-label stands for printable non-ASCII text and is what that text encodes to.
            if (not decoded or decoded.isascii() or not decoded.isprintable()
                    or decoded.encode("punycode").decode("ascii") != label[4:]):
                raise InvalidURL(f"host {host!r}: {label!r} is not valid punycode")
    return encoded


def split_input(text: str) -> list[str]:
    """URLs typed or pasted together, separated by spaces or newlines."""
    return [part for part in re.split(r"\s+", text) if part]
