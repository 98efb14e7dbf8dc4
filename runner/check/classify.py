"""How a failed request is classified: an exception from requests, urllib3 or the socket
becomes an outcome, words a person reads, and whether another attempt may help.

Each failure is named by what happened and when (the phase the transport was in): "no
data for 5 s while waiting for the response headers", "TLS: certificate expired on
2026-01-02", never a library's exception text alone.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import requests
import urllib3.exceptions as u3
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import InvalidSchema, InvalidURL, MissingSchema, ReadTimeout, SSLError

from runner.check import transport
from runner.check.options import CheckOptions
from runner.check.result import clean_text
from runner.check.transport import HopTimes


def deadline_words(options: CheckOptions, phase: str) -> str:
    return f"deadline of {options.deadline:g} s exceeded {_PHASE_WORDS.get(phase, phase)}"


_PHASE_WORDS = {
    "resolving the name": "while resolving the name",
    "connecting": "while connecting",
    "in the TLS handshake": "in the TLS handshake",
    "waiting for the response headers": "while waiting for the response headers",
    "reading the body": "while reading the body",
    "before a request": "before the next request",
}

_VERIFY_WORDS = {
    10: "certificate expired",
    9: "certificate not yet valid",
    18: "self-signed certificate",
    19: "self-signed certificate in the chain",
    20: "certificate issuer unknown (unable to get local issuer certificate)",
    21: "unable to verify the first certificate (incomplete chain?)",
    62: "certificate does not match the host name",
}


_TLS_REASONS = {
    "WRONG_VERSION_NUMBER": "the server does not speak TLS on this port (wrong version number)",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure (no protocol or cipher in common)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server's TLS version is not accepted",
    "UNSUPPORTED_PROTOCOL": "the server's TLS version is not accepted",
    "TLSV1_UNRECOGNIZED_NAME": "the server does not know this host name (SNI)",
    "UNSAFE_LEGACY_RENEGOTIATION_DISABLED": "the server needs legacy renegotiation, which is unsafe",
    "DH_KEY_TOO_SMALL": "the server's Diffie-Hellman key is too small",
    "EE_KEY_TOO_SMALL": "the server's certificate key is too small",
    "CA_MD_TOO_WEAK": "the certificate is signed with a weak digest",
}


def _tls_words(exc: BaseException, times: HopTimes) -> str:
    failure = times.tls_failure or {}
    inner = failure.get("exc")
    code = getattr(inner, "verify_code", None)
    chain = failure.get("chain") or []
    if code == 10:
        now = time.time()
        for info in chain:
            summary = transport.cert_summary(info)
            if summary["not_after"] is not None and summary["not_after"] < now:
                day = datetime.fromtimestamp(summary["not_after"], UTC).date().isoformat()
                who = "certificate" if info is chain[0] else f"certificate of {summary['subject']}"
                return f"TLS: {who} expired on {day}"
    if code is not None:
        words = _VERIFY_WORDS.get(code) or getattr(inner, "verify_message", None) or str(inner)
        if code == 62 and chain:
            names = transport.cert_summary(chain[0])["san"] or [transport.cert_summary(chain[0])["subject"]]
            words += f" (certificate is for {', '.join(names[:3])})"
        return f"TLS: {words}"
    source = inner if inner is not None else exc
    reason = getattr(source, "reason", None)
    if reason:
        words = _TLS_REASONS.get(str(reason)) or str(reason).lower().replace("_", " ")
        return f"TLS: {words}"
    return f"TLS: handshake failed ({_root(source).__class__.__name__})"


def _root(exc: BaseException) -> BaseException:
    """The innermost cause: requests wraps urllib3, which wraps the socket error."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = getattr(exc, "reason", None)
        if isinstance(nxt, BaseException):
            exc = nxt
            continue
        if exc.args and isinstance(exc.args[-1], BaseException):
            exc = exc.args[-1]
            continue
        if exc.__cause__ is not None:
            exc = exc.__cause__
            continue
        if exc.__context__ is not None and not exc.__suppress_context__:
            exc = exc.__context__
            continue
        break
    return exc


def is_stale(exc: BaseException, times: HopTimes) -> bool:
    """A reused keep-alive connection the server had closed: no byte of a response came.

    Only then is a re-send safe and honest; a new connection that fails, or one that
    failed after the response began, is a real failure of the server.
    """
    if times.new_conn or times.first_byte_at is not None or times.guard.fired:
        return False
    if times.tls_failure is not None or times.phase not in ("connecting", "waiting for the response headers"):
        return False
    root = _root(exc)
    return (isinstance(root, ConnectionResetError | BrokenPipeError | ConnectionAbortedError)
            or type(root).__name__ == "RemoteDisconnected")


def classify(exc: BaseException, times: HopTimes) -> tuple[str, str, bool]:
    """Map an exception from requests/urllib3/socket to (outcome, error, transient)."""
    guard = times.guard
    if guard.fired or guard.remaining() <= 0:
        return "deadline_exceeded", "", False
    if times.tls_failure is not None or isinstance(exc, SSLError | u3.SSLError):
        return "tls_error", _tls_words(exc, times), False
    if isinstance(exc, InvalidSchema):
        return "invalid_response", "invalid URL: only http and https URLs can be checked", False
    if isinstance(exc, MissingSchema | InvalidURL | u3.LocationParseError | u3.LocationValueError):
        return "invalid_response", f"invalid URL: {clean_text(str(exc), 200)}", False
    if isinstance(exc, u3.DecodeError | requests.exceptions.ContentDecodingError):
        return "invalid_response", "the body could not be decompressed", False
    root = _root(exc)
    phase = times.phase
    if isinstance(exc, ReadTimeout | u3.ReadTimeoutError) or isinstance(root, TimeoutError):
        return "read_timeout", f"no data for {times.op_timeout:g} s {_PHASE_WORDS.get(phase, phase)}", True
    if isinstance(root, ConnectionResetError):
        return "invalid_response", f"connection reset by the server {_PHASE_WORDS.get(phase, phase)}", True
    if isinstance(root, ConnectionError | BrokenPipeError):
        return "invalid_response", f"connection lost {_PHASE_WORDS.get(phase, phase)}", True
    if type(root).__name__ == "RemoteDisconnected":
        return "invalid_response", "the server closed the connection without a response", True
    if type(root).__name__ == "BadStatusLine":
        return "invalid_response", "the server did not answer with HTTP (bad status line)", False
    if type(root).__name__ == "LineTooLong":
        return "invalid_response", "a response header line is too long (over 64 KiB)", False
    if type(root).__name__ == "IncompleteRead" or isinstance(exc, u3.IncompleteRead):
        return "invalid_response", "the body ended before its declared length", True
    if isinstance(exc, RequestsConnectionError | u3.ProtocolError | u3.HTTPError) or isinstance(root, OSError):
        words = clean_text(str(root), 200) or type(root).__name__
        return "invalid_response", f"invalid response {_PHASE_WORDS.get(phase, phase)}: {words}", False
    if "http.client" in type(root).__module__ or isinstance(exc, requests.RequestException):
        return "invalid_response", f"invalid response: {clean_text(str(root), 200)}", False
    raise exc
