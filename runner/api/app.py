"""The ASGI app of ``runner serve``: the Runtime built at start, errors mapped to answers.

Every known error becomes a status and a one-line ``detail`` (never a traceback, never a
secret): bad input 422 naming the field, a body or a request too large 413, the
database or broker away 503 with ``Retry-After``. Anything else is logged in one line and
answered 500 ``internal error`` by the Guard (with the security headers every answer has).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.staticfiles import StaticFiles

from db import StoreError, StoreUnavailable
from runner.api.config import DEFAULT_CONFIG, ApiConfig, config_from_env
from runner.api.events import Feed
from runner.api.guard import Guard
from runner.api.legacy import router as legacy_router
from runner.api.protocol import quiet_accept_errors
from runner.api.routes import STATIC, public, router
from runner.api.urls import router as urls_router
from runner.errors import BrokerError, ConfigError, InvalidInput, UnsentJobs
from runner.jobs.settings import Settings, from_env
from runner.metrics import ApiMetrics

SWITCH_INTERVAL = 0.001  # seconds a thread may hold the GIL while another waits (Python: 0.005)

log = logging.getLogger("urltester.api")


class JsonAnswer(JSONResponse):
    """JSON with UTF-8 as is and anything unusual in a check's details as text."""

    def render(self, content: Any) -> bytes:
        # backslashreplace: a lone surrogate quoted back (a key named in a 422, say) stays
        # a JSON escape instead of failing the answer.
        return json.dumps(content, ensure_ascii=False, default=str, separators=(",", ":")).encode(
            "utf-8", "backslashreplace")


class PathOnly(logging.Filter):
    """The access log names the path, never the query string: one may carry a secret
    (``?to=http://user:password@...``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].partition("?")[0], *args[3:])
        return True


def create_app(settings: Settings, config: ApiConfig = DEFAULT_CONFIG, *, runtime: Any = None) -> FastAPI:
    """The app; builds its Runtime from ``settings`` at start unless one is handed in."""
    from runner.jobs import tokens
    from runner.jobs.runtime import Runtime

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        quiet_accept_errors(asyncio.get_running_loop())
        # The event loop takes the GIL back from a thread rendering a page after 1 ms, not
        # 5: each wait of the loop's (a send, a poll) is a hand-over (/healthz p99 under load).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        access = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, PathOnly) for f in access.filters):
            access.addFilter(PathOnly())
        rt = runtime or await run_in_threadpool(lambda: Runtime(settings, db_connections=16))
        app.state.runtime = rt
        app.state.feed = Feed(rt.store, poll=config.event_poll)
        app.state.feed.start()
        try:
            yield
        finally:
            app.state.feed.stop()
            if runtime is None:
                await run_in_threadpool(rt.close)
            sys.setswitchinterval(switch)

    app = FastAPI(
        title="urltester", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
        default_response_class=JsonAnswer,
        description="Add URLs to check and read their results. Every path but /healthz (and the page) "
        "needs `Authorization: Bearer TOKEN` (`runner token create NAME`).",
    )
    app.state.config = config
    app.state.metrics = ApiMetrics()
    app.state.zone = settings.zone  # local times of the old /api/get_jobs
    app.include_router(public)
    app.include_router(router)
    app.include_router(urls_router)
    app.include_router(legacy_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _handlers(app)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"])

    def verify(token: str) -> Any:
        return tokens.verify(app.state.runtime.store, token)

    app.add_middleware(Guard, config=config, metrics=app.state.metrics, verify=verify)
    return app


def _handlers(app: FastAPI) -> None:
    def answer(status: int, detail: Any, headers: dict[str, str] | None = None) -> JsonAnswer:
        return JsonAnswer({"detail": detail}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JsonAnswer:
        headers = dict(exc.headers or {})
        if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8, say): name it
            return answer(422, [{"loc": ["body"], "msg": "not valid JSON in UTF-8", "type": "json_invalid"}])
        if exc.status_code == 405:
            # Starlette's Allow names only the first route on the path: name every one's.
            path = request.url.path
            allowed = {m for route in app.routes if isinstance(route, APIRoute) and route.path_regex.match(path)
                       for m in route.methods or () if m != "HEAD"}
            headers["Allow"] = ", ".join(sorted(allowed))
        return answer(exc.status_code, exc.detail, headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JsonAnswer:
        # FastAPI's shape (loc, msg, type) without `input`: the input may hold a password.
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return answer(422, errors)

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> JsonAnswer:
        return answer(422, [{"loc": ["body", *([exc.where] if exc.where else [])], "msg": exc.message,
                             "type": "value_error"}])

    @app.exception_handler(UnsentJobs)
    async def unsent(request: Request, exc: UnsentJobs) -> JsonAnswer:
        return answer(503, f"broker did not confirm: {exc}; {exc.recorded} job(s) recorded and kept; "
                      "`runner requeue --stale 0s` sends them once it is back", {"Retry-After": "5"})

    @app.exception_handler(BrokerError)
    async def broker_away(request: Request, exc: BrokerError) -> JsonAnswer:
        return answer(503, f"broker unreachable: {exc}", {"Retry-After": "5"})

    @app.exception_handler(ConfigError)
    async def broker_refuses(request: Request, exc: ConfigError) -> JsonAnswer:
        # Only the broker raises it here (settings are checked at start): a refused login or a
        # host name that does not exist. The server's settings need fixing; the jobs are kept.
        return answer(503, f"broker refuses this server's settings: {exc}; the jobs are recorded and kept "
                      "(`runner requeue --stale 0s` sends them once the settings are fixed)")

    @app.exception_handler(StoreUnavailable)
    async def store_away(request: Request, exc: StoreUnavailable) -> JsonAnswer:
        return answer(503, "database unreachable", {"Retry-After": "5"})

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JsonAnswer:
        log.error("database error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return answer(503, "database error", {"Retry-After": "5"})



def from_environment() -> FastAPI:
    """For ``uvicorn --factory`` with several worker processes: settings from the environment."""
    return create_app(from_env(), config_from_env())
