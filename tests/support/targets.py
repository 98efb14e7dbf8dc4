"""Local HTTP target servers for the tests (only ever on 127.0.0.1)."""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server that says nothing when a client goes away mid-request: the
    checks under test hang up on purpose (deadlines, aborted reads), and the stdlib printed a
    ConnectionResetError traceback for each, noise in the suite's log. Other errors still print."""

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_HEAD(self) -> None:  # stdlib name
        self.do_GET()

    def do_GET(self) -> None:  # stdlib name
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        server: TargetServer = self.server  # type: ignore[assignment]
        server.hits[parts.path] = server.hits.get(parts.path, 0) + 1
        if parts.path == "/trickle-chunked" and self.command == "GET":
            self._trickle_chunked(server, query)
            return
        delay = float(query.get("ms", server.default_delay_ms)) / 1000
        if delay:
            time.sleep(delay)
        status = 200
        body = b"<html><head><title>ok page</title></head><body>OK</body></html>"
        if parts.path.startswith("/status/"):
            status = int(parts.path.split("/")[2])
            body = f"status {status}".encode()
        elif parts.path == "/flaky":
            # Fails the first `fail` times for each distinct `key`, then succeeds.
            key = query.get("key", "")
            n = server.flaky.get(key, 0)
            server.flaky[key] = n + 1
            if n < int(query.get("fail", "1")):
                status = 503
                body = b"try again"
        elif parts.path == "/switch":
            # The status the test set for `key` (server.switch), 200 until it sets one.
            status = server.switch.get(query.get("key", ""), 200)
            body = f"switch {status}".encode()
            if "t" in query:  # a page title (``t``), as written: markup in it stays text
                body = f"<html><head><title>{query['t']}</title></head><body>switch {status}</body></html>".encode()
        elif parts.path == "/flip":
            # 200 and 500 in turn for each `key`, starting with 200.
            key = query.get("key", "")
            with server.lock:
                n = server.flaky.get("flip:" + key, 0)
                server.flaky["flip:" + key] = n + 1
            status = 200 if n % 2 == 0 else 500
            body = f"flip {status}".encode()
        elif parts.path == "/title":
            body = f"<html><title>{query.get('t', '')}</title></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _trickle_chunked(self, server: TargetServer, query: dict[str, str]) -> None:
        """A chunked body of ``n`` bytes (default 4) every ``every`` ms (default 200), at most
        300 chunks, until the client goes; ``server.sent[key]`` has (monotonic time after
        the send, bytes sent so far) for each chunk."""
        size, every = int(query.get("n", "4")), float(query.get("every", "200")) / 1000
        log = server.sent.setdefault(query.get("key", ""), [])
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        sent = 0
        try:
            for _ in range(300):
                self.wfile.write(b"%x\r\n%s\r\n" % (size, b"x" * size))
                self.wfile.flush()
                sent += size
                log.append((time.monotonic(), sent))
                time.sleep(every)
        except OSError:
            pass


class TargetServer(QuietHTTPServer):
    """A threaded HTTP server: /ok, /status/NNN, /flaky?key=K&fail=N, /switch?key=K (the
    status set in ``switch[K]``), /flip?key=K (200, 500, 200, ...), /title?t=..., any
    path with ?ms=N waits N ms, /trickle-chunked?key=K&n=N&every=MS (N bytes a chunk every MS
    ms until the client goes; ``sent[K]`` logs them). ``hits`` counts requests by path."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, default_delay_ms: float = 0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.default_delay_ms = default_delay_ms
        self.hits: dict[str, int] = {}
        self.flaky: dict[str, int] = {}
        self.switch: dict[str, int] = {}
        self.sent: dict[str, list[tuple[float, int]]] = {}
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def url(self, path: str = "/ok") -> str:
        return self.base + path

    def __enter__(self) -> TargetServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def main() -> None:
    """``python -m tests.support.targets --delay-ms N``: serve until killed; prints the port."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--delay-ms", type=float, default=0)
    args = parser.parse_args()
    with TargetServer(default_delay_ms=args.delay_ms) as server:
        print(server.server_address[1], flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
