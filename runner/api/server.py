"""Running the app on uvicorn: one process, or ``workers`` processes sharing the socket."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.main import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from runner.api.config import ApiConfig
from runner.jobs.settings import Settings


def serve(settings: Settings, config: ApiConfig, *, host: str, port: int, workers: int = 1,
          log_level: str = "info") -> None:
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "server_header": False,
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
    factory = uvicorn.Config("runner.api.app:from_environment", factory=True, workers=workers, **common)
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        logging.getLogger("uvicorn.error").error("cannot listen on %s:%d: %s", host, port, exc.strerror or exc)
        sys.exit(STARTUP_FAILURE)  # what uvicorn exits with when one process cannot bind
    Multiprocess(factory, sockets=[sock]).run()


def listening_socket(host: str, port: int) -> socket.socket:
    """The port the worker processes share, made the way asyncio makes its own.

    Not ``uvicorn.run(workers=N)``: its ``Config.bind_socket`` leaves the socket's ``proto``
    at 0, accepted sockets inherit it, and asyncio turns ``TCP_NODELAY`` on only for
    sockets that say ``IPPROTO_TCP``. With Nagle on, every answer on a keep-alive
    connection after the first waited for the client's delayed ACK: ``/healthz`` took
    44 ms with two processes and 1 ms with one (uvicorn issue #3149, open).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    logging.getLogger("uvicorn.error").info("Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
                                            host, sock.getsockname()[1])
    sock.set_inheritable(True)
    return sock
