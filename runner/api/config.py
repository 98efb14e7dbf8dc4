"""The API's own settings: bounds and CORS, from ``URLTESTER_API_*`` (built once at start)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from runner.errors import ConfigError

MAX_URLS = 10_000  # URLs per request (more is 413)
MAX_PAGE = 1000  # jobs per page of GET /api/v1/jobs


@dataclass(frozen=True)
class ApiConfig:
    max_body: int = 8 * 1024 * 1024  # bytes of request body (more is 413)
    max_urls: int = MAX_URLS
    max_event_streams: int = 100  # open /api/v1/events streams per process (more is 503)
    cors_origins: tuple[str, ...] = ()  # empty: no CORS headers at all
    event_poll: float = 0.25  # seconds between looks on SQLite (PostgreSQL is told at commit)
    max_connections: int = 10_000  # open connections per process (more get 503 at once, then closed)
    header_timeout: float = 10.0  # seconds from connect (or the last answer) to a request's full headers
    idle_timeout: float = 5.0  # seconds a keep-alive connection, or a request body, may stay silent


DEFAULT_CONFIG = ApiConfig()


def config_from_env(env: Mapping[str, str] | None = None) -> ApiConfig:
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, key in (("URLTESTER_API_MAX_BODY", "max_body"), ("URLTESTER_API_MAX_EVENT_STREAMS", "max_event_streams"),
                      ("URLTESTER_API_MAX_CONNECTIONS", "max_connections")):
        if env.get(name):
            try:
                values[key] = int(env[name])
            except ValueError:
                raise ConfigError(f"{name}={env[name]!r} is not a whole number") from None
            if values[key] < 1:  # type: ignore[operator]  # an int by now (parsed above)
                raise ConfigError(f"{name}={env[name]!r} must be at least 1")
    for name, key in (("URLTESTER_API_HEADER_TIMEOUT", "header_timeout"),
                      ("URLTESTER_API_IDLE_TIMEOUT", "idle_timeout")):
        if env.get(name):
            try:
                seconds = float(env[name])
            except ValueError:
                raise ConfigError(f"{name}={env[name]!r} is not a number of seconds") from None
            if not 0.1 <= seconds <= 3600:
                raise ConfigError(f"{name}={env[name]!r} must be between 0.1 and 3600 seconds")
            values[key] = seconds
    if env.get("URLTESTER_API_CORS_ORIGINS"):
        origins = tuple(o.strip() for o in env["URLTESTER_API_CORS_ORIGINS"].split(",") if o.strip())
        for origin in origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ConfigError(f"URLTESTER_API_CORS_ORIGINS: {origin!r} is not an origin like https://host")
        values["cors_origins"] = origins
    return ApiConfig(**values)  # type: ignore[arg-type]  # values of several types, parsed above
