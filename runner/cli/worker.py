"""``runner start``: the worker process, built here from the settings (the composition root)."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from db import StoreUnavailable
from runner.cli.common import EXIT_USAGE, fail, handled
from runner.errors import BrokerError
from runner.jobs.settings import Settings
from runner.taskq.options import PoolOptions

_POOL = PoolOptions()  # the pool's defaults live there; the options read them
T = TypeVar("T")

if TYPE_CHECKING:
    from runner.jobs.worker import CheckService


def check_service(settings: Settings) -> CheckService:
    """Build one worker process's service (run in each pool process, after spawn).

    Opening the store applies migrations, so it needs the database: a database that went
    away between the preflight and here (or before a replacement child starts) is waited
    for like one that is not up yet, rather than ending the worker.
    """
    from runner.jobs.runtime import Runtime
    from runner.jobs.worker import CheckService

    return riding_out(lambda: CheckService(Runtime(settings, db_connections=4)))


class LogFormat(enum.StrEnum):
    """--log-format (runner.taskq.logs explains each)."""

    auto = "auto"
    text = "text"
    journal = "journal"
    json = "json"


@handled
def start(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=1024, help="Worker threads per process (checks wait on the network, so threads are cheap).")] = _POOL.concurrency,
    processes: Annotated[int | None, typer.Option("--processes", "-p", min=1, max=256, help="Worker processes (default: number of cores).", show_default=False)] = None,
    prefetch: Annotated[int | None, typer.Option("--prefetch", min=1, max=65535, help="Unacked messages per process (default: concurrency).", show_default=False)] = None,
    shutdown_timeout: Annotated[float, typer.Option("--shutdown-timeout", min=0, help="Seconds in-flight checks get to finish on SIGTERM/SIGINT.")] = _POOL.shutdown_timeout,
    hold_budget: Annotated[float, typer.Option("--hold-budget", min=1, help="Seconds a message may be held before its calls not yet started are handed on in a new message; keep it well under RabbitMQ's consumer_timeout (30 min by default).")] = _POOL.hold_budget,
    queue: Annotated[str | None, typer.Option("--queue", "-Q", help="Base queue (default: urltester); a region's workers consume BASE@REGION.", show_default=False)] = None,
    region: Annotated[str | None, typer.Option("--region", "-r", envvar="URLTESTER_REGION", help="Region this worker checks from (default: the default region, which consumes the base queue itself).", show_default=False)] = None,
    deny_private: Annotated[bool, typer.Option("--deny-private", help="Also refuse every address that is not globally routable (loopback, RFC 1918, CGNAT, unique-local, TEST-NETs ...).")] = False,
    allow_network: Annotated[list[str] | None, typer.Option("--allow-network", help="Network (CIDR) always allowed, overriding the address policy (repeatable).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
    log_format: Annotated[LogFormat, typer.Option("--log-format", envvar="URLTESTER_LOG_FORMAT", help="text (with a timestamp), journal (a <N> syslog-level prefix, no timestamp: journald adds its own), json (one object a line) or auto: journal when stderr is systemd's journal stream, text otherwise.")] = LogFormat.auto,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", envvar="URLTESTER_METRICS_PORT", min=1, max=65535, help="Serve Prometheus metrics of every worker process at http://HOST:PORT/metrics (default: off).", show_default=False)] = None,
    metrics_address: Annotated[str, typer.Option("--metrics-address", envvar="URLTESTER_METRICS_ADDRESS", help="Address the metrics endpoint listens on (0.0.0.0: every IPv4 interface; :: for IPv6 too).")] = "0.0.0.0",
) -> None:
    """Start a worker: a pool of threads (and processes) that check URLs from RabbitMQ.

    Waits for PostgreSQL and RabbitMQ if they are not up yet. Stops on SIGTERM or Ctrl-C, after the checks in flight (--shutdown-timeout).

    Under systemd (Type=notify) it reports READY, WATCHDOG and STATUS (checks/s, in flight); worker processes that keep dying (5 in 60 s) end it with exit 1. SIGUSR1 prints every thread's stack. See docs/operations.md.
    """
    from runner.metrics import MetricsError
    from runner.taskq.logs import configure_logging, install_stack_dumps, resolve
    from runner.taskq.pool import run_pool

    settings: Settings = ctx.obj.with_(queue=queue, region=region, deny_private=deny_private or None,
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
    fmt = resolve(log_format.value)
    configure_logging(log_level, fmt)
    install_stack_dumps()  # from now on, waiting for the services included
    options = PoolOptions(concurrency=concurrency, prefetch=prefetch, shutdown_timeout=shutdown_timeout,
                          hold_budget=hold_budget, metrics_port=metrics_port, metrics_address=metrics_address,
                          **({"processes": processes} if processes else {}))
    _wait_for_services(settings)
    try:
        code = run_pool(functools.partial(check_service, settings), options, log_level, fmt)
    except MetricsError as exc:
        raise fail(f"--metrics-port: {exc}", EXIT_USAGE) from None
    raise typer.Exit(code)


def _preflight(settings: Settings) -> None:
    """Open the database (applying migrations) and declare the queues: one clear error if not."""
    from db import open_store
    from runner.taskq.broker import open_broker

    store = open_store(settings.database_url, max_connections=1)  # also applies migrations
    store.close()
    from runner.jobs.regions import queue_for

    open_broker(settings.broker_url, queue_for(settings.queue, settings.region)).ping()


def _wait_for_services(settings: Settings) -> None:
    riding_out(lambda: _preflight(settings))


def riding_out(fn: Callable[[], T]) -> T:
    """``fn()``, waiting out an unreachable PostgreSQL or RabbitMQ.

    A worker rides out restarts of PostgreSQL and RabbitMQ, so it also waits for them at
    start (a host booting, services coming up in any order): an unreachable one is retried
    with backoff, each wait logged. A setting the service refuses (bad URL, login, database)
    ends the command at once with exit 2; waiting would not fix it."""
    import logging

    from tenacity import Retrying, retry_if_exception

    from runner.backoff import backoff
    from runner.taskq.systemd import notifier

    log = logging.getLogger("urltester.worker")

    def unreachable(exc: BaseException) -> bool:
        return isinstance(exc, BrokerError) or (isinstance(exc, StoreUnavailable) and not exc.refused)

    def waiting(state: Any) -> None:
        exc = state.outcome.exception()
        what = f"database unreachable: {exc}" if isinstance(exc, StoreUnavailable) else str(exc)
        log.warning("%s; waiting for it (next try in %.0f s)", what, state.next_action.sleep)
        # Type=notify: still starting, on purpose. Push systemd's start timeout past the next try.
        notifier().send(f"STATUS=waiting: {what}"[:400],
                        f"EXTEND_TIMEOUT_USEC={int((state.next_action.sleep + 30) * 1e6)}")

    return Retrying(wait=backoff(0.5, 15), retry=retry_if_exception(unreachable), before_sleep=waiting,
                    reraise=True)(fn)

