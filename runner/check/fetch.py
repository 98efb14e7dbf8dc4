"""Fetching a document to read (an import's SOURCE, a sitemap an index names) through the
check's own transport: the same urllib3 classes under requests, so the address policy is
enforced at each connection's real address (metadata addresses always; with
``--deny-private`` every address that is not globally routable), the same TLS contexts,
redirects followed by hand with the policy applied to each hop.

Unlike a check, the body is handed to the caller as a stream (:class:`Fetched`, a binary
file object: ``read``, ``readinto``, ``readline`` through :class:`io.BufferedReader`),
decompressed a read at a time (``Content-Encoding``: urllib3 inflates each read to at most
what was asked), never held whole: the reader decides how much it takes. A fetch has a
deadline of its own (:data:`FETCH_DEADLINE`, body included) and gives up on a connection
silent for ``op_timeout`` seconds; the deadline's watchdog cuts a connection that hangs.

``admit(url)`` (optional) is asked before each request and returns the function that
gives the leave back: the caller's per-host limits. ``on_retry_after(host, seconds)`` hears
a 429/503's Retry-After, as the checker's does. Failures raise :class:`FetchFailed` with
words for a person; the URL's password never appears in them.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions as u3

from runner.check import transport
from runner.check.policy import DEFAULT_POLICY, AddressPolicy
from runner.check.transport import CheckFailure, Guard, HopTimes
from runner.errors import UrltesterError
from runner.text import mask_url
from runner.version import USER_AGENT

FETCH_DEADLINE = 600.0   # seconds for one fetch, the body's reading included
OP_TIMEOUT = 30.0        # seconds a connection may stay silent
MAX_REDIRECTS = 10
READ_SIZE = 64 * 1024
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})

Admit = Callable[[str], Callable[[], None]]


class FetchFailed(UrltesterError):
    """A document could not be fetched (or its body broke off); ``transient`` failures may
    succeed when tried again, ``retry_after`` is the server's own word for when."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after


class Fetched(io.RawIOBase):
    """An open response body: read it, then close it. ``url`` is the final URL (after
    redirects), the base its relative links resolve against."""

    def __init__(self, response: requests.Response, url: str, guard: Guard,
                 release: Callable[[], None]) -> None:
        super().__init__()
        self._response = response
        self._raw = response.raw
        self._guard = guard
        self._release = release
        self.url = url
        self.status = response.status_code
        self.content_type: str | None = response.headers.get("content-type")
        self.content_encoding: str | None = response.headers.get("content-encoding")
        length = response.headers.get("content-length")
        self.length = int(length) if length and length.strip().isdigit() else None
        self.bytes = 0  # body bytes handed out, decompressed

    @property
    def charset(self) -> str | None:
        """The ``charset`` parameter of the Content-Type, if any."""
        for part in (self.content_type or "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip("'\"")
        return None

    @property
    def media_type(self) -> str:
        return (self.content_type or "").split(";")[0].strip().lower()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read_piece(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read_piece(self, size: int = READ_SIZE) -> bytes:
        """At most ``size`` bytes of the body (decompressed); ``b""`` at its end."""
        if self.closed:
            return b""
        guard = self._guard
        if guard.fired or guard.remaining() <= 0:
            raise FetchFailed(f"{_shown(self.url)}: not read within {FETCH_DEADLINE:g} s")
        try:
            data: bytes = self._raw.read(size, decode_content=True)
        except (u3.HTTPError, requests.RequestException, OSError) as exc:
            if guard.fired:
                raise FetchFailed(f"{_shown(self.url)}: not read within {FETCH_DEADLINE:g} s") from None
            raise FetchFailed(f"{_shown(self.url)}: the body broke off after {self.bytes:,} bytes: "
                              f"{_words(exc)}", transient=True) from None
        if not data and guard.fired:  # the watchdog's shutdown reads as the end of the body
            raise FetchFailed(f"{_shown(self.url)}: not read within {FETCH_DEADLINE:g} s")
        self.bytes += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            try:
                self._response.close()
            finally:
                self._guard.finish()
                self._release()
        super().close()


class Fetcher:
    """Fetches documents, one at a time per thread of its own (a session per Fetcher)."""

    def __init__(self, policy: AddressPolicy = DEFAULT_POLICY, *, ca_bundle: str | None = None,
                 user_agent: str = USER_AGENT, deadline: float = FETCH_DEADLINE,
                 op_timeout: float = OP_TIMEOUT,
                 on_retry_after: Callable[[str, float], None] | None = None) -> None:
        self.policy = policy
        self.deadline = deadline
        self.op_timeout = op_timeout
        self.on_retry_after = on_retry_after
        session = requests.Session()
        session.trust_env = False  # no proxies, netrc or CA paths from the environment
        adapter = transport.CheckAdapter(transport.TLSContexts(ca_bundle), pool_connections=4, pool_maxsize=2)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers = {"User-Agent": user_agent, "Accept": "*/*",  # type: ignore[assignment]  # requests accepts a plain dict
                           "Accept-Encoding": "gzip, deflate"}
        self._session = session

    def close(self) -> None:
        self._session.close()

    def open(self, url: str, *, headers: dict[str, str] | None = None, insecure: bool = False,
             max_redirects: int = MAX_REDIRECTS, admit: Admit | None = None) -> Fetched:
        """GET ``url`` and return its body to read; raises FetchFailed."""
        guard = Guard(time.monotonic() + self.deadline)
        transport.WATCHDOG.arm(guard)
        headers = dict(headers or {})
        first_host = urlsplit(url).hostname
        current = url
        try:
            for _ in range(max_redirects + 1):
                release = admit(current) if admit is not None else _nothing
                try:
                    response = self._send(current, headers, insecure, guard)
                except BaseException:
                    release()
                    raise
                status = response.status_code
                location = response.headers.get("location")
                if status in (301, 302, 303, 307, 308) and location:
                    response.close()
                    release()
                    current = self._next(current, location)
                    host = urlsplit(current).hostname
                    if host != first_host:  # credentials sent by header stay with their host
                        headers = {k: v for k, v in headers.items()
                                   if k.lower() not in ("authorization", "cookie", "proxy-authorization")}
                    continue
                if not 200 <= status < 300:
                    response.close()
                    release()
                    raise self._refused(current, response)
                return Fetched(response, current, guard, release)
            raise FetchFailed(f"{_shown(url)}: more than {max_redirects} redirects")
        except BaseException:
            guard.finish()
            raise

    def _send(self, url: str, headers: dict[str, str], insecure: bool, guard: Guard) -> requests.Response:
        remaining = guard.remaining()
        if remaining <= 0:
            raise FetchFailed(f"{_shown(url)}: not fetched within {self.deadline:g} s")
        times = HopTimes(guard=guard, policy=self.policy, op_timeout=min(self.op_timeout, remaining))
        transport.set_current(times)
        try:
            return self._session.get(url, headers=headers or None, allow_redirects=False, stream=True,
                                     timeout=(times.op_timeout, times.op_timeout), verify=not insecure)
        except CheckFailure as exc:
            if exc.outcome == "deadline_exceeded":
                raise FetchFailed(f"{_shown(url)}: not fetched within {self.deadline:g} s") from None
            raise FetchFailed(f"{_shown(url)}: {exc.error}", transient=exc.transient) from None
        except (requests.RequestException, u3.HTTPError, OSError, ValueError) as exc:
            if guard.fired:
                raise FetchFailed(f"{_shown(url)}: not fetched within {self.deadline:g} s") from None
            transient = isinstance(exc, requests.ConnectionError | requests.Timeout)
            raise FetchFailed(f"{_shown(url)}: {_words(exc)}", transient=transient) from None
        finally:
            transport.set_current(None)

    @staticmethod
    def _next(current: str, location: str) -> str:
        try:
            target = urljoin(current, location.strip())
            parts = urlsplit(target)
        except ValueError:
            raise FetchFailed(f"{_shown(current)}: redirect to an invalid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchFailed(f"{_shown(current)}: redirect to an unsupported URL: {_shown(target)}")
        return target

    def _refused(self, url: str, response: requests.Response) -> FetchFailed:
        status = response.status_code
        retry_after = _retry_after(response.headers.get("retry-after"))
        if retry_after is not None and status in (429, 503) and self.on_retry_after is not None:
            try:
                self.on_retry_after(urlsplit(url).hostname or "", retry_after)
            except Exception:  # noqa: BLE001 - pacing is advice; the fetch's failure stands
                pass
        reason = " ".join(str(response.reason or "").split())[:100]
        return FetchFailed(f"{_shown(url)}: HTTP {status} {reason}".rstrip(), status=status,
                           transient=status in TRANSIENT_STATUS, retry_after=retry_after)


def _nothing() -> None:
    return None


def _retry_after(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(min(int(value.strip()), 3600))
    return None


def _shown(url: str) -> str:
    text = mask_url(url)
    return text if len(text) <= 300 else text[:299] + "…"


def _words(exc: BaseException) -> str:
    """A library exception as a short line (its innermost cause)."""
    seen = 0
    while seen < 8:
        inner = exc.__cause__ or exc.__context__ or (
            exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None)
        if inner is None:
            break
        exc = inner
        seen += 1
    if isinstance(exc, requests.exceptions.SSLError | u3.SSLError) or "SSL" in type(exc).__name__:
        return f"TLS: {str(exc)[:200]}"
    if isinstance(exc, TimeoutError | requests.Timeout | u3.TimeoutError):
        return "no answer in time"
    text = " ".join(str(exc).split())[:200]
    return text or type(exc).__name__
