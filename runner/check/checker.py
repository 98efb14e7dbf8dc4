"""The check: test one URL over HTTP and say what was found, within a deadline.

``Checker.check(url, options)`` never raises for anything the network or the server
does and always returns within ``options.deadline`` (+ about a second of slack): it
sends GET or HEAD with requests, follows redirects itself (each hop recorded, the
address policy applied to each), reads the body streaming and capped at
``max_bytes``, retries transient failures with tenacity (exponential backoff with
jitter, never past the deadline), and evaluates the job's assertions.

The transport underneath requests (runner/check/transport.py) measures the phases, enforces the
address policy at the socket's real connect address, and lets a watchdog cut a
connection whose deadline has passed. What a failed request was is said by
runner/check/classify.py; the result, and how the final attempt becomes it, is
runner/check/result.py. This package is the only one of urltester that imports requests
and urllib3 (this module, classify.py and transport.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
from tenacity import Retrying, retry_if_result, stop_after_attempt
from tenacity.stop import stop_base

from runner.check import transport
from runner.check.body import BodyScan, body_texts
from runner.check.classify import classify, deadline_words, is_stale
from runner.check.options import DEFAULT_OPTIONS, CheckOptions
from runner.check.outcomes import OUTCOMES
from runner.check.policy import DEFAULT_POLICY, AddressPolicy
from runner.check.result import (
    TITLE_SCAN,
    Attempt,
    CheckResult,
    Hop,
    build_result,
    charset_of,
    clean_text,
    extract_title,
    masked,
    rounded,
    url_password,
)
from runner.check.transport import CheckFailure, Guard, HopTimes
from runner.version import USER_AGENT

__all__ = [  # with the names callers have always taken from here
    "DEFAULT_POLICY",
    "OUTCOMES",
    "AddressPolicy",
    "CheckResult",
    "Checker",
    "clean_text",
    "extract_title",
]

log = logging.getLogger(__name__)

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUS = frozenset({429, 502, 503, 504})
READ_SIZE = 64 * 1024  # bytes asked of the socket per read of a body
REDIRECT_BODY_CAP = 64 * 1024   # a redirect's body is drained up to this, else dropped
BACKOFF_FIRST = 0.25            # seconds; doubles per attempt, with jitter, capped below
BACKOFF_MAX = 5.0
MIN_ATTEMPT = 0.2               # don't start an attempt with less time than this left
STALE_RESENDS = 5               # pool_maxsize + 1: every pooled connection may be stale



# ---------------------------------------------------------------- the checker


class Checker:
    """Runs checks. Thread-safe: each thread gets its own requests.Session (connection
    reuse per thread); one Checker can be shared by all of a worker's threads."""

    def __init__(self, policy: AddressPolicy = DEFAULT_POLICY, *, user_agent: str = USER_AGENT,
                 ca_bundle: str | None = None,
                 on_retry_after: Callable[[str, float], None] | None = None,
                 before_retry: Callable[[str, float], bool] | None = None) -> None:
        # on_retry_after(host, seconds): a 429/503 asked for a pause (the fleet's pacing keeps it).
        self.on_retry_after = on_retry_after
        # before_retry(url, seconds left): a retry is one more request to the host, so it
        # waits for the host's rate like a check (the fleet's pacing); False: no retry.
        self.before_retry = before_retry
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
            session.headers = {"User-Agent": self.user_agent, "Accept": "*/*",   # type: ignore[assignment]  # requests accepts a plain dict
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

    def check(self, url: str, options: CheckOptions = DEFAULT_OPTIONS, *,
              sink: BodySink | None = None) -> CheckResult:
        """Check ``url``. ``sink`` (a crawl's link reader) is handed the final response's
        body as it streams past, up to ``max_bytes``: nothing more is held for it."""
        started = time.monotonic()
        guard = Guard(started + options.deadline)
        guard.sink = sink
        transport.WATCHDOG.arm(guard)
        try:
            result = self._check(url, options, guard, started)
        except Exception as exc:   # a bug of ours must not take the worker down
            log.exception("check of %s failed unexpectedly", masked(url))
            return CheckResult(outcome="invalid_response", ok=False, url=masked(url),
                               error=f"unexpected error in the check: {type(exc).__name__}",
                               method=options.method,
                               elapsed_ms=rounded((time.monotonic() - started) * 1000.0))
        else:
            if result.error:
                if "@" in url:
                    # Library messages can quote the URL; the password never leaves the check.
                    password = url_password(url)
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
        history: list[Attempt] = [self._attempt(session, url, options, guard)]
        final = history[0]
        if final.transient and options.retries > 1:
            # tenacity decides about retries; it is only brought in when the first attempt
            # failed transiently, and its first "call" hands back that attempt's result.
            def attempt() -> Attempt:
                if len(history) == 1 and not getattr(attempt, "started", False):
                    attempt.started = True  # type: ignore[attr-defined]  # a flag on the function itself
                    return history[0]
                if self.before_retry is not None and not self.before_retry(url, guard.remaining()):
                    history[-1].transient = False  # the host's rate leaves no turn before the deadline
                    return history[-1]
                result = self._attempt(session, url, options, guard)
                history.append(result)
                return result

            retryer = Retrying(
                stop=stop_after_attempt(options.retries) | _StopAtDeadline(guard),
                wait=_Backoff(),
                retry=retry_if_result(lambda a: a.transient),
                retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]  # set before it is called
                reraise=True,
            )
            final = retryer(attempt)
        result = build_result(url, options, final)
        result.attempts = len(history)
        result.retried = [{"outcome": a.outcome or "http_error", "error": a.error or a.note or ""}
                          for a in history[:-1]]
        result.flaky = result.attempts > 1 and result.ok
        result.stale_connection_retried = sum(a.stale_retried for a in history)
        result.elapsed_ms = rounded((time.monotonic() - started) * 1000.0)
        return result

    def _attempt(self, session: requests.Session, url: str, options: CheckOptions,
                 guard: Guard) -> Attempt:
        att = Attempt()
        method = options.method
        headers: dict[str, str] | None = dict(options.headers) or None
        first_host: str | None = None
        current_url = url
        while True:
            remaining = guard.remaining()
            if remaining <= 0:
                att.outcome, att.error = "deadline_exceeded", deadline_words(options, "before a request")
                return att
            op_timeout = min(remaining, max(1.0, options.deadline / max(1, options.retries)))
            hop = self._send_fresh_if_stale(session, att, current_url, method, headers, options,
                                            guard, op_timeout)
            following = len(att.hops) <= options.max_redirects
            if att.outcome is not None:
                if att.outcome == "deadline_exceeded" or guard.fired:
                    att.outcome = "deadline_exceeded"
                    att.error = deadline_words(options, hop.times.phase)
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
                att.error = f"redirect to an unsupported URL: {clean_text(masked(next_url), 200)}"
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

    def _send_fresh_if_stale(self, session: requests.Session, att: Attempt, url: str,
                             method: str, headers: dict[str, str] | None, options: CheckOptions,
                             guard: Guard, op_timeout: float) -> Hop:
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
            hop = Hop(url=url, started=time.perf_counter(),
                       times=HopTimes(guard=guard, policy=self.policy, op_timeout=op_timeout))
            stale = False
            try:
                self._send(session, hop, method, headers, options)
            except CheckFailure as exc:
                att.outcome, att.error, att.transient = exc.outcome, exc.error, exc.transient
            except Exception as exc:   # noqa: BLE001 - classified below
                stale = is_stale(exc, hop.times)
                if not stale:
                    att.outcome, att.error, att.transient = classify(exc, hop.times)
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
            self.on_retry_after(urlsplit(url).hostname or "", seconds)  # type: ignore[misc]  # a callable attribute, not a method
        except Exception:  # pacing is advice; the check goes on
            log.exception("Retry-After of %s not recorded", masked(url))

    def _send(self, session: requests.Session, hop: Hop, method: str,
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
    def _read(hop: Hop, response: requests.Response, cap: int, options: CheckOptions,
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
            scan = hop.scan = BodyScan(charset_of(response.headers.get("content-type")),
                                       *body_texts(options))
        sink: BodySink | None = guard.sink if keep else None
        if sink is not None and not sink.start(hop.url, response.headers.get("content-type")):
            sink = None
        chunks: list[bytes] = []
        stored = total = 0
        eof = False
        # Each read hands back what has arrived, so a body trickled until the deadline counts
        # the bytes that came (read(n) waits for n bytes: such a body showed 0 bytes). A body
        # with a length: read1. A chunked one: chunk by chunk (urllib3's read_chunked), not
        # read1, which waits on a chunk size of -5 where read_chunked raises ValueError.
        pieces = raw.read_chunked(READ_SIZE, decode_content=True) if raw.chunked else None
        try:
            while True:
                if guard.fired or guard.remaining() <= 0:
                    raise CheckFailure("deadline_exceeded", "")
                try:
                    chunk = (next(pieces, b"") if pieces is not None
                             else raw.read1(min(READ_SIZE, cap + 1 - total), decode_content=True))
                except ValueError as exc:  # a chunk size of "-5": the server's fault
                    raise CheckFailure("invalid_response", "malformed chunked body (a chunk size that is "
                                       "not a size)") from exc
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
                if sink is not None:
                    sink.feed(chunk)
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
                if pieces is not None:
                    pieces.close()
                response.close()


# ---------------------------------------------------------------- helpers


class BodySink(Protocol):
    """Who reads a check's body beside it (a crawl's link reader): told of each response
    whose body is read (``start``: its URL and Content-Type; False declines it), then
    handed its bytes in order, decompressed, capped at ``max_bytes``. A retried check
    starts it again for each attempt's response: the last one started is the result's."""

    def start(self, url: str, content_type: str | None) -> bool: ...

    def feed(self, data: bytes) -> None: ...


class _StopAtDeadline(stop_base):
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
        wait: float = base / 2 + random.uniform(0, base / 2)   # noqa: S311 - jitter, not crypto
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
