"""A loopback JSON webhook receiver: the Apprise target of the alert tests (json://127.0.0.1:PORT/).

Records each message it answered 200 to; can refuse the first ``fail_first`` requests with
503, or hold requests until released (a sender killed mid-delivery).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.targets import QuietHTTPServer


class Receiver:
    def __init__(self, fail_first: int = 0, hold: bool = False) -> None:
        self.fail_first = fail_first
        self.requests = 0  # every POST seen, answered or not
        self.messages: list[dict[str, Any]] = []  # those answered 200
        self.lock = threading.Lock()
        self.arrived = threading.Event()  # a request came in (set when holding)
        self.release = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests += 1
                    refuse = receiver.requests <= receiver.fail_first
                held = not receiver.release.is_set()
                receiver.arrived.set()
                if not receiver.release.wait(30) or held:
                    return  # a held request's sender was killed: nothing answered, nothing recorded
                if refuse:
                    self.send_response(503)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def titles(self) -> list[str]:
        with self.lock:
            return [m.get("title", "") for m in self.messages]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
