"""Local misbehaving servers for the check's tests, all on 127.0.0.1, each in threads.

``hostile`` is one raw-socket HTTP server whose paths misbehave in different ways
(see ROUTES); raw sockets because a well-behaved server library cannot trickle or reset.
TLS servers use certificates made with the ``openssl`` CLI into a temporary directory:
a test CA (passed to the Checker as ``ca_bundle``), a good leaf, an expired leaf and a
self-signed one. Nothing here needs a network, a database or a broker.
"""

from __future__ import annotations

import email.utils
import gzip
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from runner.check.checker import Checker

Handler = Callable[[socket.socket, str], None]


def _send(conn: socket.socket, status: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    conn.sendall(head.encode("latin-1") + body)


def _ok(body: bytes, ctype: str = "text/plain") -> Handler:
    def handle(conn: socket.socket, path: str) -> None:
        _send(conn, "200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))], body)
    return handle


def redirect_to(target: str, status: str = "302 Found") -> Handler:
    def handle(conn: socket.socket, path: str) -> None:
        _send(conn, status, [("Location", target), ("Content-Length", "0")])
    return handle


def trickle_headers(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    for _ in range(120):
        conn.sendall(b"X")          # a header line that never ends, a byte every half second
        time.sleep(0.5)             # (faster than any per-read timeout: only the deadline helps)


def trickle_body(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(120):
        conn.sendall(b"x")
        time.sleep(0.5)             # the server under test: a byte every half second


def endless_body(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")   # no length: until close
    chunk = b"y" * 65536
    while True:
        conn.sendall(chunk)


_BOMB: bytes | None = None


def gzip_bomb(conn: socket.socket, path: str) -> None:
    global _BOMB
    if _BOMB is None:   # 200 MiB of zeros, about 200 KiB compressed
        _BOMB = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
    _send(conn, "200 OK", [("Content-Encoding", "gzip"), ("Content-Length", str(len(_BOMB))),
                           ("Content-Type", "text/plain")], _BOMB)


def big_headers(conn: socket.socket, path: str) -> None:
    headers = [(f"X-Filler-{i}", "h" * 1000) for i in range(64)]   # 64 KiB of headers
    _send(conn, "200 OK", [*headers, ("Content-Length", "2")], b"ok")


def huge_header_line(conn: socket.socket, path: str) -> None:
    _send(conn, "200 OK", [("X-Huge", "h" * 70000), ("Content-Length", "2")], b"ok")


def reset_mid_body(conn: socket.socket, path: str) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
    time.sleep(0.05)                # the server under test: part of the body, a pause, then RST
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()                    # RST, not FIN


_counts: dict[str, int] = defaultdict(int)
_counts_lock = threading.Lock()


def flaky(conn: socket.socket, path: str) -> None:
    """503 the first time a given path is asked for, 200 after."""
    with _counts_lock:
        _counts[path] += 1
        n = _counts[path]
    if n == 1:
        _send(conn, "503 Service Unavailable", [("Content-Length", "0"), ("Retry-After", "0")])
    else:
        _ok(b"recovered")(conn, path)


def flaky_date(conn: socket.socket, path: str) -> None:
    """503 with Retry-After as an HTTP date 2 s ahead the first time a path is asked for."""
    with _counts_lock:
        _counts[path] += 1
        n = _counts[path]
    if n == 1:
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        _send(conn, "503 Service Unavailable", [("Content-Length", "0"), ("Retry-After", when)])
    else:
        _ok(b"recovered")(conn, path)


def big_needle(conn: socket.socket, path: str) -> None:
    """32 MiB of text, gzip'd on the wire when asked, "zzz" only at its very end."""
    size = 32 * 1024 * 1024
    block = b"a" * 65536
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                 f"Content-Length: {size}\r\n\r\n".encode())
    for _ in range(size // len(block) - 1):
        conn.sendall(block)
    conn.sendall(block[:-3] + b"zzz")


def always_503(conn: socket.socket, path: str) -> None:
    _send(conn, "503 Service Unavailable", [("Content-Length", "4")], b"down")


TITLE_HTML = (
    b"<!doctype html><html><head><meta charset='utf-8'>"
    b"<title>\n  [bold red]Sale[/bold red] \x1b[31mnow\x1b[0m &amp; [link=http://x]here[/link]\n</title>"
    b"</head><body>OK</body></html>"
)


def slow_headers(conn: socket.socket, path: str) -> None:
    time.sleep(1.5)                  # silent: a read timeout for a short per-op timeout
    _ok(b"late")(conn, path)


ROUTES: dict[str, Handler] = {
    "/ok": _ok(b"hello OK world"),
    "/html": _ok(b"<html><head><title>Hi</title></head><body>OK</body></html>", "text/html"),
    "/title": _ok(TITLE_HTML, "text/html; charset=utf-8"),
    "/loop": redirect_to("/loop"),
    "/to-ok": redirect_to("/ok", "301 Moved Permanently"),
    "/to-metadata": redirect_to("http://169.254.169.254/latest/meta-data/"),
    "/to-escape": redirect_to("/ok?\x1b[2J\x1b]0;owned\x07"),
    "/trickle-headers": trickle_headers,
    "/trickle-body": trickle_body,
    "/endless": endless_body,
    "/gzip-bomb": gzip_bomb,
    "/big-headers": big_headers,
    "/huge-header-line": huge_header_line,
    "/reset": reset_mid_body,
    "/flaky": flaky,
    "/flaky-date": flaky_date,
    "/down": always_503,
    "/missing": lambda conn, path: _send(conn, "404 Not Found", [("Content-Length", "0")]),
    "/large": _ok(b"L" * 5000),
    "/needle-at-end": _ok(b"a" * 300000 + b"NEEDLE"),
    "/big-needle": big_needle,
    "/bad-gzip": lambda conn, path: _send(conn, "200 OK", [("Content-Encoding", "gzip"),
                                                         ("Content-Length", "20")], b"\x1f\x8b" + b"\xff" * 18),
    "/slow": slow_headers,
    "/goto": lambda conn, path: redirect_to(unquote(path.partition("?to=")[2]))(conn, path),
}


@dataclass
class Server:
    port: int
    host: str = "127.0.0.1"
    scheme: str = "http"

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _serve(listener: socket.socket, on_conn: Callable[[socket.socket], None]) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=on_conn, args=(conn,), daemon=True).start()


def _http_conn(conn: socket.socket, context: ssl.SSLContext | None = None) -> None:
    try:
        if context is not None:
            conn = context.wrap_socket(conn, server_side=True)
        while True:                  # keep-alive: serve requests until the client leaves
            head = _read_head(conn)
            if not head:
                return
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = line.split(" ")
            path = parts[1] if len(parts) > 1 else "/"
            route = path.split("?", 1)[0]
            if route == "/echo":
                _ok(head)(conn, path)
                continue
            handler = ROUTES.get(route)
            if handler is None:
                _send(conn, "404 Not Found", [("Content-Length", "0")])
                continue
            if parts[0] == "HEAD":
                _send(conn, "200 OK", [("Content-Length", "12345")])
                continue
            handler(conn, path)
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def _listen() -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


@pytest.fixture(scope="session")
def hostile() -> Iterator[Server]:
    listener = _listen()
    threading.Thread(target=_serve, args=(listener, _http_conn), daemon=True).start()
    yield Server(port=listener.getsockname()[1])
    listener.close()


@pytest.fixture(scope="session")
def garbage_port() -> Iterator[Server]:
    """A port that speaks first, and not HTTP (as an SSH server does)."""
    listener = _listen()

    def speak(conn: socket.socket) -> None:
        try:
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe garbage \x1b[2J\r\n\r\n")
            conn.settimeout(1)
            _read_head(conn)
            time.sleep(0.2)         # the server under test: it holds the connection a while
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=_serve, args=(listener, speak), daemon=True).start()
    yield Server(port=listener.getsockname()[1])
    listener.close()


@pytest.fixture(scope="session")
def silent_port() -> Iterator[Server]:
    """A port that accepts connections and never says anything."""
    listener = _listen()
    held: list[socket.socket] = []

    def hold(conn: socket.socket) -> None:
        held.append(conn)            # keep it open, say nothing

    threading.Thread(target=_serve, args=(listener, hold), daemon=True).start()
    yield Server(port=listener.getsockname()[1])
    listener.close()
    for conn in held:
        conn.close()


@pytest.fixture(scope="session")
def refused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                     # nobody listens here now
    return port


# ---------------------------------------------------------------- TLS


@dataclass
class Certs:
    ca: Path
    good: tuple[Path, Path]
    expired: tuple[Path, Path]
    self_signed: tuple[Path, Path]
    wrong_name: tuple[Path, Path]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "30", "-subj", "/CN=urltester test CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
             "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "good.pem", "-days", "20", "-extfile", "ext", cwd=d)
    # -days -1: valid from now until yesterday, i.e. expired (openssl 3.0 has no -not_after)
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "expired.pem", "-days", "-1", "-extfile", "ext", cwd=d)
    (d / "ext-other").write_text("subjectAltName=DNS:other.example\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "other.pem", "-days", "20", "-extfile", "ext-other", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out",
             "self.pem", "-days", "30", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", cwd=d)
    return Certs(ca=d / "ca.pem", good=(d / "good.pem", d / "leaf.key"),
                 expired=(d / "expired.pem", d / "leaf.key"),
                 self_signed=(d / "self.pem", d / "self.key"),
                 wrong_name=(d / "other.pem", d / "leaf.key"))


def _tls_server(cert: tuple[Path, Path]) -> tuple[Server, socket.socket]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert[0]), str(cert[1]))
    listener = _listen()
    threading.Thread(target=_serve, args=(listener, lambda c: _http_conn(c, context)),
                     daemon=True).start()
    return Server(port=listener.getsockname()[1], host="localhost", scheme="https"), listener


@pytest.fixture(scope="session")
def tls_servers(certs: Certs) -> Iterator[dict[str, Server]]:
    made = {name: _tls_server(getattr(certs, name)) for name in ("good", "expired", "self_signed", "wrong_name")}
    yield {name: server for name, (server, _) in made.items()}
    for _, listener in made.values():
        listener.close()


@pytest.fixture
def checker() -> Iterator[Checker]:
    c = Checker()
    yield c
    c.close()


@pytest.fixture
def timed() -> Callable[..., tuple]:
    """Run a check and return (result, seconds it took)."""
    def run(checker: Checker, url: str, options: object) -> tuple:
        t0 = time.monotonic()
        result = checker.check(url, options)  # type: ignore[arg-type]
        return result, time.monotonic() - t0
    return run
