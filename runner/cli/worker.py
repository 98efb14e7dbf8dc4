"""``runner start``: the worker process, built here from the settings (the composition root)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any

import typer

from db import StoreUnavailable
from runner.cli.common import EXIT_USAGE, fail, handled
from runner.errors import BrokerError
from runner.jobs.settings import Settings

if TYPE_CHECKING:
    from runner.jobs.worker import CheckService


def check_service(settings: Settings) -> CheckService:
    """Build one worker process's service (run in each pool process, after spawn)."""
    from runner.jobs.runtime import Runtime
    from runner.jobs.worker import CheckService

    return CheckService(Runtime(settings, db_connections=4))

@handled
def start(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, max=1024, envvar="URLTESTER_CONCURRENCY", help="Fix the checks each process runs at once (default: adaptive, found as it goes between 8 and --max-concurrency; see docs/performance.md).", show_default=False)] = None,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1, max=4096, envvar="URLTESTER_MAX_CONCURRENCY", help="Ceiling of the adaptive concurrency per process (one thread each; an idle thread costs only its stack).")] = 512,
    processes: Annotated[int | None, typer.Option("--processes", "-p", min=1, max=256, help="Worker processes (default: number of cores).", show_default=False)] = None,
    prefetch: Annotated[int | None, typer.Option("--prefetch", min=1, max=65535, help="Unacked messages per process (default: the current concurrency, following it).", show_default=False)] = None,
    shutdown_timeout: Annotated[float, typer.Option("--shutdown-timeout", min=0, help="Seconds in-flight checks get to finish on SIGTERM/SIGINT.")] = 30.0,
    hold_budget: Annotated[float, typer.Option("--hold-budget", min=1, help="Seconds a message may be held before its calls not yet started are handed on in a new message; keep it well under RabbitMQ's consumer_timeout (30 min by default).")] = 600.0,
    queue: Annotated[str | None, typer.Option("--queue", "-Q", help="Queue to consume (default: urltester).", show_default=False)] = None,
    deny_private: Annotated[bool, typer.Option("--deny-private", help="Also refuse loopback, RFC 1918, CGNAT and unique-local addresses.")] = False,
    allow_network: Annotated[list[str] | None, typer.Option("--allow-network", help="Network (CIDR) always allowed, overriding the address policy (repeatable).")] = None,
    host_rate: Annotated[float | None, typer.Option("--host-rate", min=0.001, help="Checks per second per target host, kept by the whole fleet together (URLTESTER_HOST_RATE; default unlimited; `runner limits set` overrides per host).", show_default=False)] = None,
    host_connections: Annotated[int | None, typer.Option("--host-connections", min=1, help="Checks at once per target host, fleet-wide (URLTESTER_HOST_CONNECTIONS; default unlimited).", show_default=False)] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Start a worker: a pool of threads (and processes) that check URLs from RabbitMQ.

    Waits for PostgreSQL and RabbitMQ if they are not up yet. Stops on SIGTERM or Ctrl-C, after the checks in flight (--shutdown-timeout).
    """
    from runner.taskq.pool import PoolOptions, configure_logging, run_pool

    settings: Settings = ctx.obj.with_(queue=queue, deny_private=deny_private or None,
                                       host_rate=host_rate, host_connections=host_connections,
                                       allow_networks=tuple(allow_network) if allow_network else None)
    if settings.immediate:
        raise fail(
            "runner start needs RabbitMQ, but the broker is the in-memory default. Set "
            "URLTESTER_BROKER_URL=amqp://USER:PASSWORD@HOST:5672// (or --broker-url). Without a broker, "
            "`runner submit` checks URLs in-process.",
            EXIT_USAGE,
        )
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise fail(f"--log-level {log_level!r}: use debug, info, warning or error", EXIT_USAGE)
    configure_logging(log_level)
    options = PoolOptions(concurrency=concurrency, max_concurrency=max_concurrency, prefetch=prefetch, shutdown_timeout=shutdown_timeout,
                          hold_budget=hold_budget, **({"processes": processes} if processes else {}))
    _wait_for_services(settings)
    raise typer.Exit(run_pool(functools.partial(check_service, settings), options, log_level))


def _preflight(settings: Settings) -> None:
    """Open the database (applying migrations) and declare the queues: one clear error if not."""
    from db import open_store
    from runner.taskq.broker import open_broker

    store = open_store(settings.database_url, max_connections=1)  # also applies migrations
    store.close()
    open_broker(settings.broker_url, settings.queue).ping()


def _wait_for_services(settings: Settings) -> None:
    """A worker rides out restarts of PostgreSQL and RabbitMQ, so it also waits for them at
    start (a host booting, services coming up in any order): an unreachable one is retried
    with backoff, each wait logged. A setting the service refuses (bad URL, login, database)
    ends the command at once with exit 2; waiting would not fix it."""
    import logging

    from tenacity import Retrying, retry_if_exception

    from runner.backoff import backoff

    log = logging.getLogger("urltester.worker")

    def unreachable(exc: BaseException) -> bool:
        return isinstance(exc, BrokerError) or (isinstance(exc, StoreUnavailable) and not exc.refused)

    def waiting(state: Any) -> None:
        exc = state.outcome.exception()
        what = f"database unreachable: {exc}" if isinstance(exc, StoreUnavailable) else str(exc)
        log.warning("%s; waiting for it (next try in %.0f s)", what, state.next_action.sleep)

    Retrying(wait=backoff(0.5, 15), retry=retry_if_exception(unreachable), before_sleep=waiting,
             reraise=True)(_preflight, settings)

