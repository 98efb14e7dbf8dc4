"""Running the app on uvicorn: one process, or ``workers`` processes sharing the socket."""

from __future__ import annotations

import os

import uvicorn

from runner.api.config import ApiConfig
from runner.jobs.settings import Settings


def serve(settings: Settings, config: ApiConfig, *, host: str, port: int, workers: int = 1,
          log_level: str = "info") -> None:
    common: dict = {"host": host, "port": port, "log_level": log_level, "server_header": False,
                    "proxy_headers": True, "forwarded_allow_ips": "127.0.0.1", "timeout_graceful_shutdown": 10}
    if workers <= 1:
        from runner.api.app import create_app

        uvicorn.run(create_app(settings, config), **common)
        return
    # Worker processes are started afresh: they read the settings back from the environment.
    os.environ.update({"URLTESTER_DATABASE_URL": settings.database_url, "URLTESTER_BROKER_URL": settings.broker_url,
                       "URLTESTER_QUEUE": settings.queue, "URLTESTER_DENY_PRIVATE": "1" if settings.deny_private else "",
                       "URLTESTER_ALLOW_NETWORKS": ",".join(settings.allow_networks),
                       "URLTESTER_PUBLISH_TIMEOUT": str(settings.publish_timeout)})
    uvicorn.run("runner.api.app:from_environment", factory=True, workers=workers, **common)
