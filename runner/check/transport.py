"""The check's transport underneath requests: phase timings, the address policy, the deadline.

requests does not expose what happens on the wire, so this module supplies urllib3
connection and pool classes (mounted through ``CheckAdapter``) that:

- resolve the host themselves (``getaddrinfo``, timed, bounded by the deadline),
- ask the AddressPolicy about every address and connect only to an allowed one; the
  socket connects to exactly the address that was judged (no DNS rebinding),
- time the TCP connect, the TLS handshake, request-sent → first byte, and record the
  peer address, whether the connection was reused, and the TLS session details,
- register every socket with the check's ``Guard``, which the ``Watchdog`` thread shuts
  down when the check's deadline passes: socket timeouts bound one recv(), not a server
  that trickles one byte a second, and getaddrinfo cannot be interrupted at all.

What a connection measures goes to the calling thread's current ``HopTimes`` (set by
runner/check/checker.py around each request); requests and urllib3 do the request on the
calling thread, so a thread-local is exact. Outside a check the classes behave as
plain urllib3 connections with no policy (never used that way here).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import os
import queue
import socket
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import requests.certs
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

from runner.check.policy import AddressPolicy, parse_address

_AddrInfo = tuple[Any, ...]  # one entry of getaddrinfo()'s answer

_now = time.monotonic
_perf = time.perf_counter


class CheckFailure(Exception):
    """A failure the transport has already classified (outcome + words for a person).

    Deliberately not an OSError: urllib3 and requests let it through unwrapped.
    """

    def __init__(self, outcome: str, error: str, *, transient: bool = False) -> None:
        super().__init__(error)
        self.outcome = outcome
        self.error = error
        self.transient = transient


# ---------------------------------------------------------------- deadline watchdog


class Guard:
    """The sockets of one check, and whether its deadline has fired."""

    __slots__ = ("deadline", "fired", "done", "_socks", "sink")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline      # time.monotonic() value
        self.fired = False
        self.done = False
        self.sink: Any = None         # the check's BodySink, if its caller reads the body (a crawl)
        self._socks: list[socket.socket] = []

    def remaining(self) -> float:
        return self.deadline - _now()

    def register(self, sock: socket.socket) -> None:
        if len(self._socks) > 64:     # long redirect chains on reused sockets
            del self._socks[:32]
        self._socks.append(sock)
        if self.fired:
            _shutdown(sock)

    def finish(self) -> None:
        """The check is over: never fire, and let go of its sockets."""
        self.done = True
        self._socks = []

    def fire(self) -> None:
        if self.done:
            return
        self.fired = True
        for sock in list(self._socks):
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket-level shutdown, also for an SSLSocket: it wakes a thread blocked
    # in recv()/SSL_read() on the same fd without touching the TLS object from here.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


class Watchdog:
    """One daemon thread per process that fires guards whose deadline has passed.

    Arming takes no Python lock: a guard goes on a ``queue.SimpleQueue`` (C, atomic) and
    the watchdog's own thread moves it to a heap only it touches. It was one Condition
    for every check: with hundreds of threads and the workers' 20 ms GIL switch interval,
    each hand-over of that lock waited for a GIL turn and the threads formed a convoy
    (a py-spy dump of a worker on 0 ms targets: 506 of 512 threads in ``arm``, waiting).
    A guard fires at most ``TICK`` after its deadline.
    """

    TICK = 0.02

    def __init__(self) -> None:
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        # A forked worker process has the parent's heap but not its thread.
        self._incoming: queue.SimpleQueue[Guard] = queue.SimpleQueue()
        self._heap: list[tuple[float, int, Guard]] = []
        self._seq = itertools.count()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, guard: Guard) -> None:
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="check-watchdog", daemon=True)
                    self._thread.start()
        self._incoming.put(guard)

    def _run(self) -> None:
        heap, incoming, seq = self._heap, self._incoming, self._seq
        while True:
            if not heap:
                guard = incoming.get()  # nothing armed: sleep until something is
                heapq.heappush(heap, (guard.deadline, next(seq), guard))
            time.sleep(max(0.0, min(self.TICK, heap[0][0] - _now())))
            while True:
                try:
                    guard = incoming.get_nowait()
                except queue.Empty:
                    break
                heapq.heappush(heap, (guard.deadline, next(seq), guard))
            now = _now()
            while heap and (heap[0][2].done or heap[0][0] <= now):
                heapq.heappop(heap)[2].fire()  # fire() does nothing for a finished check


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._reset_after_fork)


# ---------------------------------------------------------------- per-hop measurements


@dataclass
class HopTimes:
    """What the transport saw for one request (one hop of one attempt)."""

    guard: Guard
    policy: AddressPolicy
    op_timeout: float
    phase: str = "connecting"
    new_conn: bool = False
    ip: str | None = None
    dns_ms: float = 0.0
    connect_ms: float = 0.0
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    sent_at: float | None = None
    headers_at: float | None = None
    first_byte_at: float | None = None
    tls: dict[str, Any] | None = None
    tls_failure: dict[str, Any] | None = field(default=None)


_local = threading.local()


def current() -> HopTimes | None:
    return getattr(_local, "hop", None)


def set_current(hop: HopTimes | None) -> None:
    _local.hop = hop


def _is_numeric(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


class TooManyLookups(socket.gaierror):
    """Resolver.max_pending lookups are in flight: a temporary failure (EAI_AGAIN)."""


class Resolver:
    """getaddrinfo off the check's thread, so a check waits for a name at most its deadline.

    getaddrinfo cannot be interrupted: a lookup a slow nameserver never answers keeps its
    thread for the resolver's own timeout (resolv.conf: 5 s x attempts x servers, or
    forever with a broken NSS module). With a fixed pool of threads, as many hung lookups
    stalled every other name's check in the process. Here:

    - lookups of one (name, port) in flight together share one thread and one answer, so
      a name that hangs costs one thread however many checks ask for it;
    - any other name gets a thread of its own at once (idle threads are reused), so hung
      lookups never delay a healthy name;
    - at most ``max_pending`` lookups are in flight; past that a new name fails at once as
      a temporary DNS failure (retried like one) instead of adding threads without bound.

    ``getaddrinfo`` may be injected (benchmarks, tests); by default ``socket.getaddrinfo``
    is looked up at each call.
    """

    def __init__(self, max_pending: int = 1024, getaddrinfo: Any = None) -> None:
        self.max_pending = max_pending
        self._getaddrinfo = getaddrinfo
        self._pool = ThreadPoolExecutor(max_workers=max_pending, thread_name_prefix="check-dns")
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], Future[list[_AddrInfo]]] = {}

    def _reset_after_fork(self) -> None:
        # A forked worker has the parent's pending futures but none of its threads.
        self._pool = ThreadPoolExecutor(max_workers=self.max_pending, thread_name_prefix="check-dns")
        self._lock = threading.Lock()
        self._pending = {}

    def pending(self) -> int:
        return len(self._pending)

    def _lookup(self, host: str, port: int) -> list[_AddrInfo]:
        getaddrinfo = self._getaddrinfo or socket.getaddrinfo
        return getaddrinfo(host, port, 0, socket.SOCK_STREAM)

    def resolve(self, host: str, port: int, timeout: float) -> list[_AddrInfo]:
        """The addresses of ``host``, or TimeoutError after ``timeout`` seconds.

        Raises socket.gaierror (also for too many pending lookups: EAI_AGAIN) and
        UnicodeError like getaddrinfo.
        """
        if _is_numeric(host):
            return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        key = (host, port)
        with self._lock:
            future = self._pending.get(key)
            fresh = future is None
            if future is None:
                if len(self._pending) >= self.max_pending:
                    raise TooManyLookups(socket.EAI_AGAIN, f"{len(self._pending)} name lookups "
                                         "already pending in this process (slow nameservers?)")
                future = self._pool.submit(self._lookup, host, port)
                self._pending[key] = future
        if fresh:
            # Outside the lock: a lookup already done runs the callback here, at once, and
            # the callback takes the lock.
            future.add_done_callback(functools.partial(self._forget, key))
        try:
            return future.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            raise TimeoutError("name resolution timed out") from None

    def _forget(self, key: tuple[str, int], done: Future[list[_AddrInfo]]) -> None:
        with self._lock:
            if self._pending.get(key) is done:
                del self._pending[key]


RESOLVER = Resolver()
os.register_at_fork(after_in_child=RESOLVER._reset_after_fork)


def resolve(host: str, port: int, timeout: float) -> list[_AddrInfo]:
    """getaddrinfo bounded by ``timeout`` (see Resolver)."""
    return RESOLVER.resolve(host, port, timeout)


_GAI_WORDS = {
    socket.EAI_NONAME: "name not found",
    socket.EAI_AGAIN: "temporary failure (server not reachable or no answer)",
    socket.EAI_FAIL: "server failure",
}
if hasattr(socket, "EAI_NODATA"):
    _GAI_WORDS[socket.EAI_NODATA] = "no address for this name"


class _TimedConnectionMixin:
    """Shared by the HTTP and HTTPS connection classes below."""

    _ut_ip: str | None = None
    _ut_tls: dict[str, Any] | None = None

    def _new_conn(self) -> socket.socket:
        hop = current()
        host: str = self._dns_host.strip("[]")  # type: ignore[attr-defined]  # the urllib3 connection class mixed in
        shown = host if len(host) <= 80 else host[:79] + "…"     # for messages
        port: int = self.port  # type: ignore[attr-defined]  # as above
        if hop is None:   # not inside a check: behave like urllib3
            conn: socket.socket = super()._new_conn()  # type: ignore[misc]  # the urllib3 connection class mixed in
            return conn
        guard = hop.guard
        hop.new_conn = True
        hop.phase = "resolving the name"
        t0 = _perf()
        try:
            infos = resolve(host, port, min(guard.remaining(), hop.op_timeout))
        except socket.gaierror as exc:
            words = (exc.strerror if isinstance(exc, TooManyLookups)
                     else _GAI_WORDS.get(exc.errno or 0, exc.strerror or str(exc)))
            transient = exc.errno == socket.EAI_AGAIN
            raise CheckFailure("dns_error", f"DNS: {words} ({shown})", transient=transient) from None
        except TimeoutError:
            if guard.remaining() <= 0:
                raise CheckFailure("deadline_exceeded", "") from None
            raise CheckFailure("dns_error", f"DNS: no answer within {hop.op_timeout:g} s ({shown})",
                               transient=True) from None
        except UnicodeError:
            raise CheckFailure("dns_error", f"DNS: {shown!r} is not a valid name") from None
        t1 = _perf()
        hop.dns_ms = (t1 - t0) * 1000.0

        refused: list[str] = []
        allowed: list[_AddrInfo] = []
        for info in infos:
            addr = info[4][0]
            why = hop.policy.refusal(parse_address(addr))
            if why is None:
                allowed.append(info)
            else:
                refused.append(f"{addr} ({why})")
        if not allowed:
            raise CheckFailure("blocked", f"blocked by address policy: {', '.join(refused[:3])}")

        hop.phase = "connecting"
        last: BaseException | None = None
        for af, socktype, proto, _canon, sa in allowed:
            timeout = min(guard.remaining(), hop.op_timeout)
            if timeout <= 0:
                break
            sock = TimedSocket(af, socktype, proto)
            try:
                for opt in self.socket_options or ():  # type: ignore[attr-defined]  # as above
                    sock.setsockopt(*opt)
                sock.settimeout(timeout)
                guard.register(sock)
                sock.connect(sa)
            except OSError as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            hop.connect_ms = (_perf() - t1) * 1000.0
            hop.ip = self._ut_ip = sa[0]
            sock.settimeout(hop.op_timeout)
            return sock
        if guard.fired or guard.remaining() <= 0:
            raise CheckFailure("deadline_exceeded", "")
        where = f"{shown} port {port}"
        if isinstance(last, TimeoutError | socket.timeout):
            raise CheckFailure("connect_timeout", f"connect to {where} timed out after "
                               f"{hop.op_timeout:g} s", transient=True)
        if isinstance(last, ConnectionRefusedError):
            raise CheckFailure("connect_refused", f"connection refused by {where}")
        words = getattr(last, "strerror", None) or str(last)
        raise CheckFailure("connect_refused", f"cannot connect to {where}: {words}")

    def request(self, *args: Any, **kwargs: Any) -> None:
        hop = current()
        if hop is not None:
            sock = self.sock  # type: ignore[attr-defined]  # as above
            if sock is not None and not hop.new_conn:
                hop.guard.register(sock)
                hop.ip = self._ut_ip
                hop.tls = self._ut_tls
        super().request(*args, **kwargs)  # type: ignore[misc]  # as above
        if hop is not None:
            hop.sent_at = _perf()
            hop.phase = "waiting for the response headers"

    def getresponse(self) -> Any:
        hop = current()
        sock = self.sock  # type: ignore[attr-defined]  # as above
        if not isinstance(sock, _FirstByteMixin):   # made outside a check
            sock = None
        if hop is not None and sock is not None:
            sock._ut_hop = hop       # the socket notes when the first byte arrives
        try:
            response = super().getresponse()  # type: ignore[misc]  # as above
        finally:
            if sock is not None:
                sock._ut_hop = None
        if hop is not None:
            hop.headers_at = _perf()
            if hop.sent_at is not None:
                first = hop.first_byte_at or hop.headers_at
                hop.ttfb_ms = (first - hop.sent_at) * 1000.0
        return response


class _FirstByteMixin:
    """Records when the first read after a request returns: the first byte's arrival.

    A Python-level recv_into costs well under a microsecond; a poll() before reading,
    the other way to see the first byte, costs a system call per request.
    """

    _ut_hop: HopTimes | None = None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        count: int = super().recv_into(buffer, nbytes, flags)  # type: ignore[misc]  # the socket class mixed in
        hop = self._ut_hop
        if hop is not None and count:    # 0 is the end of the stream, not a byte
            hop.first_byte_at = _perf()
            self._ut_hop = None
        return count


class TimedSocket(_FirstByteMixin, socket.socket):
    pass


class TimedHTTPConnection(_TimedConnectionMixin, HTTPConnection):
    pass


class TimedHTTPSConnection(_TimedConnectionMixin, HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        hop = current()
        if hop is not None:
            self._ut_tls = hop.tls


class TimedSSLSocket(_FirstByteMixin, ssl.SSLSocket):  # type: ignore[misc]  # recv_into: an int nbytes, as socket's
    """Times the handshake and keeps the certificate chain, also when verification fails."""

    def do_handshake(self, block: bool = False) -> None:
        hop = current()
        if hop is None:
            return super().do_handshake(block)
        hop.phase = "in the TLS handshake"
        hop.guard.register(self)
        t0 = _perf()
        try:
            super().do_handshake(block)
        except ssl.SSLError as exc:
            hop.tls_ms = (_perf() - t0) * 1000.0
            chain = _chain_info(self)
            hop.tls_failure = {"exc": exc, "chain": chain}
            if chain:
                hop.tls = {"protocol": None, "cipher": None, "alpn": None, "verified": False,
                           "chain": [cert_summary(info) for info in chain]}
            raise
        hop.tls_ms = (_perf() - t0) * 1000.0
        hop.tls = tls_details(self)
        hop.tls["verified"] = self.context.verify_mode == ssl.CERT_REQUIRED
        return None


def _chain_info(sock: ssl.SSLSocket) -> list[dict[str, Any]]:
    try:
        chain = sock._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]  # private: the chain before verification
    except (AttributeError, ValueError, ssl.SSLError):
        return []
    out = []
    for cert in chain[:10]:
        try:
            out.append(cert.get_info())
        except (ValueError, ssl.SSLError):
            continue
    return out


def _name(rdns: Any) -> str:
    """A certificate name as a short string: the CN when present, else all attributes."""
    parts = [(k, v) for rdn in rdns or () for k, v in rdn]
    for key, value in parts:
        if key == "commonName":
            return str(value)
    return ", ".join(f"{k}={v}" for k, v in parts)


def _when(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(ssl.cert_time_to_seconds(text))
    except ValueError:
        return None


def cert_summary(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": _name(info.get("subject")),
        "issuer": _name(info.get("issuer")),
        "not_before": _when(info.get("notBefore")),
        "not_after": _when(info.get("notAfter")),
        "san": [v for k, v in info.get("subjectAltName", ())[:20] if k in ("DNS", "IP Address")],
    }


def tls_details(sock: ssl.SSLSocket) -> dict[str, Any]:
    """Protocol, cipher and the certificate chain as the server sent it (epoch seconds)."""
    chain = [cert_summary(info) for info in _chain_info(sock)]
    cipher = sock.cipher()
    return {
        "protocol": sock.version(),
        "cipher": cipher[0] if cipher else None,
        "alpn": sock.selected_alpn_protocol(),
        "chain": chain,
    }


# ---------------------------------------------------------------- pools and adapter


class TimedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = TimedHTTPConnection


class TimedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = TimedHTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        # The base class warns on every unverified request; --insecure is a choice
        # the operator made per job, and the result records verified: false.
        HTTPConnectionPool._validate_conn(self, conn)
        if conn.is_closed:
            conn.connect()


def make_ssl_context(verify: bool, ca_bundle: str | None = None) -> ssl.SSLContext:
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE)
    if verify:
        context.check_hostname = True
        context.load_verify_locations(ca_bundle or requests.certs.where())
    else:
        context.check_hostname = False
    context.sslsocket_class = TimedSSLSocket
    return context


class TLSContexts:
    """The two TLS contexts every check uses: verifying (with the CA bundle) and not.

    Loading the CA bundle costs ~16 ms of CPU, so one pair is made per Checker and shared
    by every thread's adapter (an SSLContext is safe to share between threads). Made per
    adapter, 64 threads starting together spent over a second of CPU on it.
    """

    def __init__(self, ca_bundle: str | None = None) -> None:
        self.verify = make_ssl_context(True, ca_bundle)
        self.insecure = make_ssl_context(False)


class CheckAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools use the timed connections and two prepared TLS contexts."""

    def __init__(self, contexts: TLSContexts | None = None, **kwargs: Any) -> None:
        contexts = contexts or TLSContexts()
        self._ctx_verify = contexts.verify
        self._ctx_insecure = contexts.insecure
        super().__init__(**kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": TimedHTTPConnectionPool,
            "https": TimedHTTPSConnectionPool,
        }

    def build_connection_pool_key_attributes(self, request: Any, verify: Any,
                                             cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            pool_kwargs["ssl_context"] = self._ctx_insecure if verify is False else self._ctx_verify
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # The contexts already hold the CA bundle; requests would otherwise make urllib3
        # reload it into a shared context on every new connection.
        if url.lower().startswith("https"):
            conn.cert_reqs = "CERT_REQUIRED" if verify is not False else "CERT_NONE"
            conn.ca_certs = None
            conn.ca_cert_dir = None
