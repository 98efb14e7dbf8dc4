"""The check: test one URL over HTTP and say what was found, within a deadline.

``Checker.check(url, options)`` never raises for anything the network or the server
does and always returns within ``options.deadline`` (+ about a second of slack): it
sends GET or HEAD with requests, follows redirects itself (each hop recorded, the
address policy applied to each), reads the body streaming and capped at
``max_bytes``, retries transient failures with tenacity (exponential backoff with
jitter, never past the deadline), and evaluates the job's assertions.

The transport underneath requests (runner/check/transport.py) measures the phases, enforces the
address policy at the socket's real connect address, and lets a watchdog cut a
connection whose deadline has passed. This package is the only one of urltester that
imports requests and urllib3 (this module and transport.py).

Everything a server sends that ends up in a result (reason phrase, title, header
values) is cleaned of control characters and capped; nothing is interpreted as markup.
"""

from __future__ import annotations

import html
import itertools
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions as u3
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import InvalidSchema, InvalidURL, MissingSchema, ReadTimeout, SSLError
from tenacity import Retrying, retry_if_result, stop_after_attempt

from runner.check import transport
from runner.check.body import BodyScan, body_texts
from runner.check.options import DEFAULT_OPTIONS, CheckOptions, Condition
from runner.check.outcomes import OUTCOMES
from runner.check.policy import DEFAULT_POLICY, AddressPolicy
from runner.check.transport import CheckFailure, Guard, HopTimes
from runner.fields import ResultFields
from runner.text import mask_url
from runner.version import USER_AGENT

__all__ = [
    "DEFAULT_POLICY",
    "OUTCOMES",
    "AddressPolicy",
    "CheckResult",
    "Checker",
]

log = logging.getLogger(__name__)

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUS = frozenset({429, 502, 503, 504})
READ_SIZE = 64 * 1024  # bytes asked of the socket per read of a body
REDIRECT_BODY_CAP = 64 * 1024   # a redirect's body is drained up to this, else dropped
TITLE_SCAN = 256 * 1024         # the <title> is looked for in the first bytes only
TITLE_MAX = 300
URL_MAX = 2000
HEADER_VALUE_MAX = 500
HEADERS_MAX = 64
BACKOFF_FIRST = 0.25            # seconds; doubles per attempt, with jitter, capped below
BACKOFF_MAX = 5.0
MIN_ATTEMPT = 0.2               # don't start an attempt with less time than this left
STALE_RESENDS = 5               # pool_maxsize + 1: every pooled connection may be stale


# ---------------------------------------------------------------- the result


@dataclass(kw_only=True)
class CheckResult(ResultFields):
    """What one check found: the result's fields (:mod:`runner.fields`: outcome, ok,
    status_code, total_ms, attempts, error, final_url, bytes, content_type, title), then
    the check's details. ``as_dict()`` is JSON-safe; docs/check.md explains each field."""

    outcome: str                          # a check always has an outcome, ok and attempts
    ok: bool
    attempts: int = 1
    # --- more of the response
    url: str | None = None                # the URL asked for, password masked
    method: str = "GET"
    reason: str | None = None
    http_version: str | None = None
    content_length: int | None = None     # as declared by the server
    headers: dict[str, str] = field(default_factory=dict)   # final response's, cleaned, capped
    redirects: list[dict[str, Any]] = field(default_factory=list)   # [{status, url}] per hop followed
    # --- the connection and phases (ms, summed over the hops of the final attempt)
    ip: str | None = None
    reused: bool | None = None
    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    transfer_ms: float | None = None
    hops: list[dict[str, Any]] = field(default_factory=list)
    # --- TLS
    tls: dict[str, Any] | None = None     # of the first https hop: the URL asked for
    cert_days: int | None = None          # days left on the earliest-expiring cert of any hop
    # --- retries and assertions
    flaky: bool = False
    retried: list[dict[str, str]] = field(default_factory=list)   # earlier attempts' outcome/error
    failed_conditions: list[str] = field(default_factory=list)
    stale_connection_retried: int = 0     # requests re-sent at once: a reused connection was closed
    elapsed_ms: float | None = None       # the whole check, retries and backoff included

    def as_dict(self) -> dict[str, Any]:
        # Every field already holds JSON-safe values (nested dicts and lists of plain values),
        # so a shallow copy does: dataclasses.asdict's deep copy cost ~5% of a worker's CPU.
        return dict(self.__dict__)


# ---------------------------------------------------------------- text hygiene

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


def clean_text(text: str, limit: int) -> str:
    """Server-sent text made safe to store and show: no control characters, capped."""
    if len(text) <= limit and text.isprintable() and "  " not in text and text.strip() == text:
        return text     # the common case; isprintable() is False for every control character
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _clean_opt(text: str | None) -> str | None:
    return None if text is None else clean_text(text, 300)


def _mask_url(url: str) -> str:
    """runner.jobs.urls.mask_url, with the common no-credentials case answered at once."""
    return url if "@" not in url else mask_url(url)


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


# <title> is RCDATA: its content is text and character references, never tags, so a
# search for the first open tag and the next close tag is exact, and linear (html.parser
# was a third of the check's CPU for the same answer).
_TITLE_OPEN = re.compile(rb"<title(?:\s[^<>]{0,200})?>", re.IGNORECASE)
_TITLE_CLOSE = re.compile(rb"</title", re.IGNORECASE)


def extract_title(body: bytes, charset: str) -> str | None:
    """The first <title> as plain text, references decoded, whitespace collapsed, capped."""
    head = body[:TITLE_SCAN]
    opened = _TITLE_OPEN.search(head)
    if opened is None:
        return None
    closed = _TITLE_CLOSE.search(head, opened.end())
    end = closed.start() if closed else opened.end() + TITLE_MAX * 4
    raw = head[opened.end(): min(end, opened.end() + TITLE_MAX * 16)]
    title = clean_text(html.unescape(raw.decode(charset, errors="replace")), TITLE_MAX)
    return title or None


_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)


def _charset(content_type: str | None) -> str:
    if content_type:
        m = _CHARSET.search(content_type)
        if m:
            name = m.group(1)
            try:
                "".encode(name)
                return name
            except LookupError:
                pass
    return "utf-8"


# ---------------------------------------------------------------- one hop


@dataclass
class _Hop:
    """One request/response of one attempt (internal; summarised into CheckResult.hops)."""

    url: str
    times: HopTimes
    started: float
    status: int | None = None
    reason: str | None = None
    version: int | None = None
    headers: Any = None
    location: str | None = None
    declared: int | None = None     # Content-Length
    body: bytes = b""               # the first TITLE_SCAN bytes, for the title
    scan: BodyScan | None = None    # the body assertions' answers (see Checker._read)
    nbytes: int | None = None       # body bytes read, decompressed, at most max_bytes
    too_large: bool = False
    ended: float | None = None

    def summary(self) -> dict[str, Any]:
        t = self.times
        transfer = None
        if t.headers_at is not None and self.ended is not None:
            transfer = (self.ended - t.headers_at) * 1000.0
        ttfb = t.ttfb_ms
        return {
            "url": clean_text(_mask_url(self.url), URL_MAX),
            "status": self.status,
            "ip": t.ip,
            "reused": not t.new_conn if self.status is not None or t.ip else None,
            "dns_ms": _r(t.dns_ms),
            "connect_ms": _r(t.connect_ms),
            "tls_ms": _r(t.tls_ms),
            "ttfb_ms": _r(ttfb),
            "transfer_ms": _r(transfer),
            "total_ms": _r(((self.ended or time.perf_counter()) - self.started) * 1000.0),
        }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class _Attempt:
    """The outcome of one attempt: a finished hop chain, or a classified failure."""

    __slots__ = ("hops", "outcome", "error", "transient", "retry_after", "note", "stale_retried")

    def __init__(self) -> None:
        self.hops: list[_Hop] = []
        self.outcome: str | None = None
        self.error: str | None = None
        self.transient = False
        self.retry_after: float | None = None
        self.note: str | None = None      # why a status was retried (for CheckResult.retried)
        self.stale_retried = 0            # requests re-sent because a reused connection was stale


# ---------------------------------------------------------------- the checker


class Checker:
    """Runs checks. Thread-safe: each thread gets its own requests.Session (connection
    reuse per thread); one Checker can be shared by all of a worker's threads."""

    def __init__(self, policy: AddressPolicy = DEFAULT_POLICY, *, user_agent: str = USER_AGENT,
                 ca_bundle: str | None = None,
                 on_retry_after: Callable[[str, float], None] | None = None) -> None:
        # on_retry_after(host, seconds): a 429/503 asked for a pause (the fleet's pacing keeps it).
        self.on_retry_after = on_retry_after
        self.policy = policy
        self.user_agent = user_agent
        self._contexts = transport.TLSContexts(ca_bundle)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    # -- sessions

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False            # no proxies, netrc or CA paths from the env
            adapter = transport.CheckAdapter(self._contexts, pool_connections=20,
                                          pool_maxsize=4)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers = {"User-Agent": self.user_agent, "Accept": "*/*",   # type: ignore[assignment]
                               "Accept-Encoding": "gzip, deflate"}
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    # -- the check

    def check(self, url: str, options: CheckOptions = DEFAULT_OPTIONS) -> CheckResult:
        started = time.monotonic()
        guard = Guard(started + options.deadline)
        transport.WATCHDOG.arm(guard)
        try:
            result = self._check(url, options, guard, started)
        except Exception as exc:   # a bug of ours must not take the worker down
            log.exception("check of %s failed unexpectedly", _mask_url(url))
            return CheckResult(outcome="invalid_response", ok=False, url=_mask_url(url),
                               error=f"unexpected error in the check: {type(exc).__name__}",
                               method=options.method,
                               elapsed_ms=_r((time.monotonic() - started) * 1000.0))
        else:
            if result.error:
                if "@" in url:
                    # Library messages can quote the URL; the password never leaves the check.
                    password = _password(url)
                    if password:
                        result.error = result.error.replace(password, "***")
                # Errors quote server-sent names and the job's own texts: plain text only.
                result.error = clean_text(result.error, 2000)
            return result
        finally:
            guard.finish()
            transport.set_current(None)

    def _check(self, url: str, options: CheckOptions, guard: Guard, started: float) -> CheckResult:
        session = self._session()
        session.cookies.clear()                  # cookies live for one check's redirects only
        history: list[_Attempt] = [self._attempt(session, url, options, guard)]
        final = history[0]
        if final.transient and options.retries > 1:
            # tenacity decides about retries; it is only brought in when the first attempt
            # failed transiently, and its first "call" hands back that attempt's result.
            def attempt() -> _Attempt:
                if len(history) == 1 and not getattr(attempt, "started", False):
                    attempt.started = True  # type: ignore[attr-defined]
                    return history[0]
                result = self._attempt(session, url, options, guard)
                history.append(result)
                return result

            retryer = Retrying(
                stop=stop_after_attempt(options.retries) | _StopAtDeadline(guard),
                wait=_Backoff(),
                retry=retry_if_result(lambda a: a.transient),
                retry_error_callback=lambda state: state.outcome.result(),
                reraise=True,
            )
            final = retryer(attempt)
        result = self._result(url, options, final, guard)
        result.attempts = len(history)
        result.retried = [{"outcome": a.outcome or "http_error", "error": a.error or a.note or ""}
                          for a in history[:-1]]
        result.flaky = result.attempts > 1 and result.ok
        result.stale_connection_retried = sum(a.stale_retried for a in history)
        result.elapsed_ms = _r((time.monotonic() - started) * 1000.0)
        return result

    def _attempt(self, session: requests.Session, url: str, options: CheckOptions,
                 guard: Guard) -> _Attempt:
        att = _Attempt()
        method = options.method
        headers: dict[str, str] | None = dict(options.headers) or None
        first_host: str | None = None
        current_url = url
        while True:
            remaining = guard.remaining()
            if remaining <= 0:
                att.outcome, att.error = "deadline_exceeded", _deadline_words(options, "before a request")
                return att
            op_timeout = min(remaining, max(1.0, options.deadline / max(1, options.retries)))
            hop = self._send_fresh_if_stale(session, att, current_url, method, headers, options,
                                            guard, op_timeout)
            following = len(att.hops) <= options.max_redirects
            if att.outcome is not None:
                if att.outcome == "deadline_exceeded" or guard.fired:
                    att.outcome = "deadline_exceeded"
                    att.error = _deadline_words(options, hop.times.phase)
                    att.transient = False
                return att
            if hop.location is None:
                if hop.status in RETRY_STATUS and hop.status not in options.status_set:
                    att.transient = True
                    att.retry_after = _retry_after(hop.headers)
                    if att.retry_after and hop.status in (429, 503) and self.on_retry_after is not None:
                        self._throttled(hop.url, att.retry_after)
                    att.note = clean_text(f"HTTP {hop.status} {hop.reason or ''}", 200)
                return att
            if not following:
                att.outcome = "too_many_redirects"
                att.error = f"more than {options.max_redirects} redirects"
                return att
            # Follow: resolve relative Locations; only http(s); drop credentials sent by
            # header when the host changes (requests does the same for its own redirects).
            try:
                next_url = urljoin(current_url, hop.location)
                parts = urlsplit(next_url)
            except ValueError:
                att.outcome, att.error = "invalid_response", "redirect to an invalid URL"
                return att
            if parts.scheme not in ("http", "https") or not parts.hostname:
                att.outcome = "invalid_response"
                att.error = f"redirect to an unsupported URL: {clean_text(_mask_url(next_url), 200)}"
                return att
            if first_host is None:
                first_host = urlsplit(url).hostname
            downgrade = parts.scheme == "http" and current_url.startswith("https:")
            if headers and (parts.hostname != first_host or downgrade):
                headers = {k: v for k, v in headers.items()
                           if k.lower() not in ("authorization", "cookie", "proxy-authorization")}
            if hop.status == 303 and method != "HEAD":
                method = "GET"
            current_url = next_url

    def _send_fresh_if_stale(self, session: requests.Session, att: _Attempt, url: str,
                             method: str, headers: dict[str, str] | None, options: CheckOptions,
                             guard: Guard, op_timeout: float) -> _Hop:
        """One hop, re-sent at once on a new connection when a reused one was stale.

        A server may close an idle keep-alive connection whenever it likes (Apache after
        KeepAliveTimeout, nginx after keepalive_requests, load balancers at any time); when
        that close meets our next request, the request fails before any byte of a response.
        Like curl, browsers and RFC 9112 section 9.3.1, the request (GET or HEAD: idempotent)
        goes again on a fresh connection: not an attempt, not flaky, counted in
        ``CheckResult.stale_connection_retried``. Each re-send drops one stale pooled
        connection, so the loop ends by ``STALE_RESENDS`` or on a new connection.
        """
        for _ in range(STALE_RESENDS + 1):
            hop = _Hop(url=url, started=time.perf_counter(),
                       times=HopTimes(guard=guard, policy=self.policy, op_timeout=op_timeout))
            stale = False
            try:
                self._send(session, hop, method, headers, options)
            except CheckFailure as exc:
                att.outcome, att.error, att.transient = exc.outcome, exc.error, exc.transient
            except Exception as exc:   # noqa: BLE001 - classified below
                stale = _is_stale(exc, hop.times)
                if not stale:
                    att.outcome, att.error, att.transient = _classify(exc, hop.times)
            finally:
                hop.ended = hop.ended or time.perf_counter()
                transport.set_current(None)
            if not stale:
                break
            att.stale_retried += 1
        else:
            att.outcome, att.error, att.transient = (
                "invalid_response", "every reused connection was closed before a response", True)
        att.hops.append(hop)
        return hop

    def _throttled(self, url: str, seconds: float) -> None:
        try:
            self.on_retry_after(urlsplit(url).hostname or "", seconds)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - pacing is advice; the check goes on
            log.exception("Retry-After of %s not recorded", _mask_url(url))

    def _send(self, session: requests.Session, hop: _Hop, method: str,
              headers: dict[str, str] | None, options: CheckOptions) -> None:
        """One request; fills ``hop``. Raises for the caller to classify."""
        t = hop.times
        transport.set_current(t)
        response = session.request(
            method, hop.url, headers=headers, allow_redirects=False, stream=True,
            timeout=(t.op_timeout, t.op_timeout), verify=not options.insecure,
        )
        if t.guard.fired:
            # The watchdog's shutdown reads as an end of stream, which http.client can
            # take for the end of the headers: what arrived is not a response.
            response.close()
            raise CheckFailure("deadline_exceeded", "")
        raw = response.raw
        hop.status = response.status_code
        hop.reason = response.reason
        hop.version = getattr(raw, "version", None)
        hop.headers = response.headers
        hop.declared = _content_length(response.headers)
        is_redirect = hop.status in REDIRECT_CODES and "location" in response.headers
        if is_redirect and options.max_redirects > 0:
            hop.location = response.headers["location"]
            # Drain a small body so the connection can be reused; drop it otherwise.
            # Past max_redirects the redirect is still "followed" to report the loop.
            self._read(hop, response, REDIRECT_BODY_CAP, options, keep=False)
            return
        if method == "HEAD":
            hop.ended = time.perf_counter()
            raw.release_conn()
            return
        if hop.declared is not None and hop.declared > options.max_bytes:
            hop.too_large = True
            hop.ended = time.perf_counter()
            response.close()
            return
        self._read(hop, response, options.max_bytes, options, keep=True)

    @staticmethod
    def _read(hop: _Hop, response: requests.Response, cap: int, options: CheckOptions,
              keep: bool) -> None:
        """Read the body streaming, decompressed, until EOF or one byte past ``cap``.

        Every byte is counted; the first TITLE_SCAN bytes are kept for the title, and body
        assertions are answered by a BodyScan as the chunks pass, so no option makes a
        check hold more than that plus one chunk. ``keep`` False (a redirect's body) keeps
        nothing and is never too_large.
        """
        hop.times.phase = "reading the body"
        raw = response.raw
        guard = hop.times.guard
        store = min(cap, TITLE_SCAN) if keep else 0
        scan: BodyScan | None = None
        if keep and _needs_body(options):
            scan = hop.scan = BodyScan(_charset(response.headers.get("content-type")),
                                       *body_texts(options))
        chunks: list[bytes] = []
        stored = total = 0
        eof = False
        try:
            while True:
                if guard.fired or guard.remaining() <= 0:
                    raise CheckFailure("deadline_exceeded", "")
                chunk = raw.read(min(READ_SIZE, cap + 1 - total), decode_content=True)
                if not chunk:
                    if guard.fired:      # the watchdog's shutdown, not the server's end
                        raise CheckFailure("deadline_exceeded", "")
                    eof = True
                    break
                total += len(chunk)
                if total > cap:
                    chunk = chunk[: len(chunk) - (total - cap)]
                    total = cap
                    hop.too_large = keep
                if scan is not None:
                    scan.feed(chunk)
                if stored < store:
                    piece = chunk[: store - stored]
                    chunks.append(piece)
                    stored += len(piece)
                if hop.too_large or (not keep and total >= cap):
                    break
        finally:
            hop.ended = time.perf_counter()
            hop.body = b"".join(chunks)
            hop.nbytes = total
            if scan is not None:
                scan.finish()
            if eof:
                raw.release_conn()
            else:
                response.close()

    # -- building the result

    def _result(self, url: str, options: CheckOptions, att: _Attempt, guard: Guard) -> CheckResult:
        hops = att.hops
        last = hops[-1] if hops else None
        result = CheckResult(outcome="ok", ok=True, url=_mask_url(url), method=options.method)
        summaries = result.hops = [h.summary() for h in hops]
        if hops and hops[0].location is not None:
            result.redirects = [{"status": h.status,
                                 "url": clean_text(_mask_url(urljoin(h.url, h.location)), URL_MAX)}
                                for h in hops if h.location is not None and h.status is not None]
        if last is not None and (last.times.ip is not None or last.status is not None):
            # Sums over the hops that reached a server (a hop refused by the policy did not).
            dns = connect = total = 0.0
            tls = ttfb = transfer = None
            for h, summary in zip(hops, summaries, strict=True):
                t = h.times
                if t.ip is None and h.status is None:
                    continue
                dns += t.dns_ms
                connect += t.connect_ms
                total += summary["total_ms"]
                if t.tls_ms is not None:
                    tls = (tls or 0.0) + t.tls_ms
                if t.ttfb_ms is not None:
                    ttfb = (ttfb or 0.0) + t.ttfb_ms
                if summary["transfer_ms"] is not None:
                    transfer = (transfer or 0.0) + summary["transfer_ms"]
            result.dns_ms, result.connect_ms, result.total_ms = _r(dns), _r(connect), _r(total)
            result.tls_ms, result.ttfb_ms, result.transfer_ms = _r(tls), _r(ttfb), _r(transfer)
            result.ip = last.times.ip
            result.reused = summaries[-1]["reused"]
        self._tls(result, hops, att)

        if last is not None and last.status is not None:
            headers = last.headers
            result.status_code = last.status
            result.reason = clean_text(last.reason or "", 100) or None
            result.http_version = {9: "HTTP/0.9", 10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}.get(
                last.version or 0)
            result.final_url = clean_text(_mask_url(last.url), URL_MAX)
            ctype = headers.get("content-type")
            result.content_type = clean_text(ctype, 200) if ctype else None
            result.content_length = last.declared
            result.headers = {clean_text(k.lower(), 100): clean_text(v, HEADER_VALUE_MAX)
                              for k, v in itertools.islice(headers.items(), HEADERS_MAX)}
            result.bytes = last.nbytes
            if last.body and result.content_type and "html" in result.content_type.lower():
                result.title = extract_title(last.body, _charset(result.content_type))

        if att.outcome is not None:
            result.outcome, result.ok, result.error = att.outcome, False, att.error
            return result
        assert last is not None
        if last.too_large:
            result.outcome, result.ok = "too_large", False
            size = ("is longer" if result.bytes is not None
                    else f"declares {result.content_length} bytes")
            result.error = f"body {size}, more than max_bytes {options.max_bytes}"
            return result
        if last.status not in options.status_set:
            result.outcome, result.ok = "http_error", False
            result.error = (f"HTTP {last.status} {result.reason or ''}".rstrip()
                            + f" (expected {options.expect_status})")
            return result
        failures = self._assertions(result, last, options)
        if failures:
            result.outcome, result.ok = "assertion_failed", False
            result.failed_conditions = failures
            result.error = "; ".join(failures)
        return result

    @staticmethod
    def _tls(result: CheckResult, hops: list[_Hop], att: _Attempt) -> None:
        now = time.time()
        earliest: float | None = None
        for hop in hops:
            details = hop.times.tls
            if not details:
                continue
            chain = details.get("chain") or []
            afters = [c["not_after"] for c in chain if c.get("not_after")]
            if afters:
                earliest = min(afters) if earliest is None else min(earliest, *afters)
            if result.tls is None:
                leaf = chain[0] if chain else {}
                result.tls = {
                    "protocol": details.get("protocol"),
                    "cipher": details.get("cipher"),
                    "alpn": details.get("alpn"),
                    "verified": details.get("verified"),
                    "subject": _clean_opt(leaf.get("subject")),
                    "issuer": _clean_opt(leaf.get("issuer")),
                    "san": [clean_text(n, 200) for n in leaf.get("san", [])],
                    "not_before": _iso(leaf.get("not_before")),
                    "not_after": _iso(leaf.get("not_after")),
                    "days_left": _days(leaf.get("not_after"), now),
                    "chain_not_after": _iso(min(afters)) if afters else None,
                    "chain_days_left": _days(min(afters), now) if afters else None,
                    "chain": [{"subject": _clean_opt(c["subject"]), "issuer": _clean_opt(c["issuer"]),
                               "not_after": _iso(c["not_after"])} for c in chain],
                }
        if earliest is not None:
            result.cert_days = _days(earliest, now)

    def _assertions(self, result: CheckResult, hop: _Hop, options: CheckOptions) -> list[str]:
        failures: list[str] = []
        scan = hop.scan or BodyScan.empty(options)
        if options.body_contains is not None and not scan.contains(options.body_contains):
            failures.append(f'body does not contain "{options.body_contains}"')
        if options.body_excludes is not None and scan.contains(options.body_excludes):
            failures.append(f'body contains "{options.body_excludes}"')
        if options.max_ms is not None and (result.total_ms or 0.0) > options.max_ms:
            failures.append(f"took {result.total_ms:.0f} ms, more than max_ms {options.max_ms:g}")
        for cond in options.parsed_conditions:
            problem = _evaluate(cond, result, scan)
            if problem:
                failures.append(problem)
        return failures


# ---------------------------------------------------------------- helpers


class _StopAtDeadline:
    """Stop retrying when the next backoff would leave too little time for an attempt."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def __call__(self, state: Any) -> bool:
        upcoming = getattr(state, "upcoming_sleep", 0.0) or 0.0
        return self.guard.remaining() - upcoming < MIN_ATTEMPT


class _Backoff:
    """Exponential backoff with full jitter, honouring Retry-After when it is longer."""

    def __call__(self, state: Any) -> float:
        import random

        base = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (state.attempt_number - 1))
        wait = base / 2 + random.uniform(0, base / 2)   # noqa: S311 - jitter, not crypto
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            retry_after = outcome.result().retry_after
            if retry_after is not None:
                wait = max(wait, retry_after)
        return wait


def _needs_body(options: CheckOptions) -> bool:
    return (options.body_contains is not None or options.body_excludes is not None
            or any(c.startswith("body ") for c in options.conditions))


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        # RFC 9110 10.2.3: delay-seconds or an HTTP-date (IMF-fixdate, or the obsolete forms
        # email.utils also reads). A date in the past means "now".
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None    # neither: ignored, backoff applies
        if when.tzinfo is None:          # "-0000" or no zone: HTTP dates are GMT
            when = when.replace(tzinfo=UTC)
        seconds = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return seconds if 0 <= seconds <= 3600 else None


def _content_length(headers: Any) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        number = int(value.split(",")[0].strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _days(epoch: float | None, now: float) -> int | None:
    if epoch is None:
        return None
    return int((epoch - now) / 86400)    # whole days, truncated toward zero


def _deadline_words(options: CheckOptions, phase: str) -> str:
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


def _is_stale(exc: BaseException, times: HopTimes) -> bool:
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


def _classify(exc: BaseException, times: HopTimes) -> tuple[str, str, bool]:
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


def _evaluate(cond: Condition, result: CheckResult, scan: BodyScan) -> str | None:
    """None when the condition holds, else words saying why not."""
    field_name = cond.field
    if field_name == "body":
        return None if scan.holds(cond.op, cond.value) else f"condition failed: {cond.text}"
    actual: Any
    if field_name == "status":
        actual = result.status_code
    elif field_name == "redirects":
        actual = len(result.redirects)
    elif field_name.startswith("header."):
        actual = result.headers.get(field_name[7:])
    else:
        actual = getattr(result, field_name)
    if actual is None:
        return f"{cond.text}: {field_name} is not available"
    op, want = cond.op, cond.value
    if op == "in":
        held = actual in want
    elif op == "contains":
        held = want in actual
    elif op == "not contains":
        held = want not in actual
    else:
        if isinstance(want, float):
            actual = float(actual)
        held = {
            "==": actual == want, "!=": actual != want, "<": actual < want,
            "<=": actual <= want, ">": actual > want, ">=": actual >= want,
        }[op]
    if held:
        return None
    shown = actual if not isinstance(actual, float) else f"{actual:g}"
    return f"condition failed: {cond.text} ({field_name} was {unicodedata.normalize('NFC', str(shown))[:100]})"
