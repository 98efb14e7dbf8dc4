"""Running the app on uvicorn: one process, or ``workers`` processes sharing the socket.

The socket is bound here, first, whatever the number of processes: a port that is taken
is one line and exit 3 before anything says "serving"; ``announce`` is called once the
socket listens. Every connection is bounded by :mod:`runner.api.protocol`.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import uvicorn
from uvicorn.main import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from runner.api.config import ApiConfig
from runner.jobs.settings import Settings

log = logging.getLogger("urltester.api")
DESCRIPTORS_KEPT = 256  # for the database pool, the broker, log files and the threads' work


class PortUnavailable(Exception):
    """The address cannot be listened on (taken, not ours, no permission)."""


def serve(settings: Settings, config: ApiConfig, *, host: str, port: int, workers: int = 1,
          log_level: str = "info", announce: Callable[[int], None] | None = None) -> None:
    config = within_descriptors(config)
    common: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "server_header": False,
                    "proxy_headers": True, "forwarded_allow_ips": "127.0.0.1", "timeout_graceful_shutdown": 10,
                    "http": "runner.api.protocol:BoundedH11Protocol", "timeout_keep_alive": config.idle_timeout}
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise PortUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    if announce is not None:
        announce(sock.getsockname()[1])
    if workers <= 1:
        from runner.api.app import create_app

        single = uvicorn.Config(create_app(settings, config), **common)
        single.urltester_bounds = config  # type: ignore[attr-defined]  # read by the protocol
        server = uvicorn.Server(single)
        server.run(sockets=[sock])
        if not server.started:
            sys.exit(STARTUP_FAILURE)
        return
    # Worker processes are started afresh: they read the settings back from the environment.
    os.environ.update({"URLTESTER_DATABASE_URL": settings.database_url, "URLTESTER_BROKER_URL": settings.broker_url,
                       "URLTESTER_QUEUE": settings.queue,
                       "URLTESTER_DENY_PRIVATE": "1" if settings.deny_private else "",
                       "URLTESTER_ALLOW_NETWORKS": ",".join(settings.allow_networks),
                       "URLTESTER_PUBLISH_TIMEOUT": str(settings.publish_timeout)})
    several = uvicorn.Config("runner.api.app:from_environment", factory=True, workers=workers, **common)
    several.urltester_bounds = config  # type: ignore[attr-defined]  # pickled to each worker with the Config
    Multiprocess(several, sockets=[sock]).run()


def within_descriptors(config: ApiConfig) -> ApiConfig:
    """Raise the soft descriptor limit to the hard one, and keep ``max_connections`` below it
    (with room for the process's own files): past the limit a connection is refused with
    503 rather than an accept failing for want of a descriptor."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or config.max_connections + DESCRIPTORS_KEPT <= soft:
        return config
    allowed = max(16, soft - DESCRIPTORS_KEPT)
    log.warning("at most %d connections per process: the descriptor limit is %d (LimitNOFILE)", allowed, soft)
    return replace(config, max_connections=allowed)


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
        sock.listen(2048)  # from now on connections wait in the backlog for the app to start
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
