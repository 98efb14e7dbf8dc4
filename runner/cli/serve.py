"""``runner serve``: the HTTP API and the page (see docs/api.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from runner.cli.common import EXIT_UNAVAILABLE, EXIT_USAGE, fail, handled


@handled
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", envvar="URLTESTER_API_HOST",
                                      help="Address to bind (all interfaces: 0.0.0.0; put TLS in "
                                           "front).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="URLTESTER_API_PORT", min=1, max=65535,
                                      help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option("--workers", envvar="URLTESTER_API_WORKERS", min=1, max=64,
                                         help="Server processes sharing the port.")] = 1,
    timezone: Annotated[str | None, typer.Option("--timezone", envvar="URLTESTER_TIMEZONE", show_default=False,
                                                 help="Time zone of the old /api/get_jobs' times: an IANA name such as "
                                                      "Europe/Paris (default: the machine's).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", envvar="URLTESTER_LOG_LEVEL",
                                           help="critical, error, warning, info or debug.")] = "info",
) -> None:
    """Serve the HTTP API (/api/v1/..., /add_job, /get_jobs, the old system's /api/add_job and /api/get_jobs) and the
    page on http://HOST:PORT/.

    Every path but /healthz and the page needs `Authorization: Bearer TOKEN` (runner token
    create NAME). Bounds and CORS: URLTESTER_API_MAX_BODY (bytes, default 8 MiB),
    URLTESTER_API_MAX_EVENT_STREAMS (default 100), URLTESTER_API_MAX_CONNECTIONS (per process,
    default 10000), URLTESTER_API_HEADER_TIMEOUT (seconds, default 10), URLTESTER_API_IDLE_TIMEOUT
    (seconds, default 5), URLTESTER_API_CORS_ORIGINS (default: none). A taken port exits 3.
    """
    from db import open_store
    from runner.api.config import config_from_env
    from runner.api.server import PortUnavailable
    from runner.api.server import serve as run

    if log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
        raise fail(f"--log-level {log_level!r}: use critical, error, warning, info or debug", EXIT_USAGE)
    settings = ctx.obj.with_(timezone=timezone)
    config = config_from_env()
    open_store(settings.database_url, max_connections=1).close()  # migrate now; fail now, clearly
    import os
    import socket

    from runner.jobs.alerts import start_sender

    def announce(bound: int) -> None:  # once the socket listens: never before a bind that fails
        typer.echo(f"runner: serving on http://{host}:{bound}/ (database {settings.database_shown}, "
                   f"broker {settings.broker_shown})", err=True)

    # Alerts' outbox is delivered by this process too (one sender, whatever --workers says).
    alert_store = open_store(settings.database_url, max_connections=2, migrate=False)
    sender = start_sender(alert_store, settings, worker=f"serve@{socket.gethostname()}:{os.getpid()}")
    try:
        run(settings, config, host=host, port=port, workers=workers, log_level=log_level.lower(), announce=announce)
    except PortUnavailable as exc:  # taken, or not ours: one line, before anything said "serving"
        raise fail(str(exc), EXIT_UNAVAILABLE) from None
    finally:
        sender.stop(timeout=5)
        alert_store.close()
