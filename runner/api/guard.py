"""The ASGI middleware every request passes first: body bound, bearer token, security
headers, metrics. Auth lives here rather than in a dependency so that a request without
a valid token gets 401 before anything else looks at it (a malformed body included): no
answer hints whether a route, a job or a body would have been acceptable."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.api.config import ApiConfig
from runner.metrics import ApiMetrics

# No token needed: the page and its files (no data in them), the contract, liveness.
PUBLIC = ("/", "/healthz", "/openapi.json", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)

# The page's script and styles come from /static/ only: no inline script can run, so a
# title of <script>...</script> that slipped into the DOM as HTML still would not execute.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class BodyTooLarge(HTTPException):
    """Raised while a body without Content-Length is read (an HTTPException, so FastAPI's
    body parsing passes it on as it is instead of turning it into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")


class Guard:
    def __init__(self, app: ASGIApp, *, config: ApiConfig, metrics: ApiMetrics, verify: Any) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics
        self.verify = verify  # token text -> Token | None (blocking: run in a thread)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        limit = self.config.max_body

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
                self.metrics.duration.labels(scope["method"], _route(scope)).observe(time.perf_counter() - started)
            await send(message)

        received = 0

        async def receive_bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            length = _header(scope, b"content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _answer(send_wrapped, 413, f"request body over the limit of {limit} bytes")
                return
            path = scope["path"]
            if path not in PUBLIC and not path.startswith(PUBLIC_PREFIXES):
                token = await self._token(scope)
                if token is None:
                    await _answer(send_wrapped, 401, "unauthorized", [(b"www-authenticate", b"Bearer")])
                    return
                scope.setdefault("state", {})["token"] = token
            await self.app(scope, receive_bounded, send_wrapped)
        finally:
            self.metrics.requests.labels(scope["method"], _route(scope), str(status["code"])).inc()

    async def _token(self, scope: Scope) -> Any:
        value = _header(scope, b"authorization") or ""
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        return await run_in_threadpool(self.verify, credentials.strip())


def _route(scope: Scope) -> str:
    """The matched route's template (bounded label values), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
