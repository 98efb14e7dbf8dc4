"""``runner start``: the worker process, built here from the settings (the composition root)."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from db import StoreUnavailable
from runner.cli.common import EXIT_USAGE, LogLevel, fail, handled, split_networks
from runner.errors import BrokerError
from runner.jobs.settings import ENV, Settings
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


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """True when ``name`` was typed after ``start``: its variable is already read by the
    same option on ``runner`` itself, which must not be overridden by the variable again."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


WORKER = "Worker"


@handled
def start(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", metavar="N", min=1, max=1024,
                                                    envvar="URLTESTER_CONCURRENCY", rich_help_panel=WORKER,
                                                    help="Fix the checks each process runs at once (default: adaptive, "
                                                         "found as it goes up to --max-concurrency; see "
                                                         "docs/performance.md).", show_default=False)] = None,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", metavar="N", min=1, max=4096,
                                                 envvar="URLTESTER_MAX_CONCURRENCY", rich_help_panel=WORKER,
                                                 help="Ceiling of the adaptive concurrency per process (the process "
                                                      "runs one thread per check it lets run at "
                                                      "once).")] = _POOL.max_concurrency,
    processes: Annotated[int | None, typer.Option("--processes", "-p", metavar="N", min=1, max=256,
                                                  envvar="URLTESTER_PROCESSES", rich_help_panel=WORKER,
                                                  help="Worker processes (default: number of cores).",
                                                  show_default=False)] = None,
    prefetch: Annotated[int | None, typer.Option("--prefetch", metavar="N", min=1, max=65535,
                                                 envvar="URLTESTER_PREFETCH", rich_help_panel=WORKER,
                                                 help="Unacked messages per process (default: the current concurrency, "
                                                      "following it).", show_default=False)] = None,
    shutdown_timeout: Annotated[float, typer.Option("--shutdown-timeout", metavar="SECONDS", min=0,
                                                    envvar="URLTESTER_SHUTDOWN_TIMEOUT", rich_help_panel=WORKER,
                                                    help="Seconds in-flight checks get to finish on "
                                                         "SIGTERM/SIGINT.")] = _POOL.shutdown_timeout,
    hold_budget: Annotated[float, typer.Option("--hold-budget", metavar="SECONDS", min=1,
                                               envvar="URLTESTER_HOLD_BUDGET", rich_help_panel=WORKER,
                                               help="Seconds a message may be held before its calls not yet started "
                                                    "are handed on in a new message; keep it well under RabbitMQ's "
                                                    "consumer_timeout (30 min by default).")] = _POOL.hold_budget,
    log_level: Annotated[LogLevel, typer.Option("--log-level", envvar="URLTESTER_LOG_LEVEL", case_sensitive=False,
                                                rich_help_panel=WORKER,
                                                help="Least severe log records written.")] = LogLevel.info,
    log_format: Annotated[LogFormat, typer.Option("--log-format", envvar="URLTESTER_LOG_FORMAT", rich_help_panel=WORKER,
                                                  help="text (with a timestamp), journal (a <N> syslog-level prefix, "
                                                       "no timestamp: journald adds its own), json (one object a line) "
                                                       "or auto: journal when stderr is systemd's journal stream, text "
                                                       "otherwise.")] = LogFormat.auto,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", metavar="PORT", envvar="URLTESTER_METRICS_PORT",
                                                     min=1, max=65535, rich_help_panel=WORKER,
                                                     help="Serve Prometheus metrics of every worker process at "
                                                          "http://HOST:PORT/metrics (default: off).",
                                                     show_default=False)] = None,
    metrics_address: Annotated[str, typer.Option("--metrics-address", metavar="ADDRESS",
                                                 envvar="URLTESTER_METRICS_ADDRESS", rich_help_panel=WORKER,
                                                 help="Address the metrics endpoint listens on (0.0.0.0: every IPv4 "
                                                      "interface; :: for IPv6 too).")] = "0.0.0.0",  # noqa: S104 - scraped from outside
    queue: Annotated[str | None, typer.Option("--queue", "-Q", metavar="NAME", envvar=ENV["queue"], show_default=False,
                                              rich_help_panel="Settings",
                                              help="Base queue (the same as `runner --queue`; default urltester); a "
                                                   "region's workers consume BASE@REGION.")] = None,
    region: Annotated[str | None, typer.Option("--region", "-r", metavar="REGION", envvar="URLTESTER_REGION",
                                               show_default=False, rich_help_panel="Settings",
                                               help="Region this worker checks from (default: the default region, "
                                                    "which consumes the base queue itself).")] = None,
    deny_private: Annotated[bool, typer.Option("--deny-private", envvar=ENV["deny_private"], rich_help_panel="Settings",
                                               help="Also refuse every address that is not globally routable: "
                                                    "loopback, RFC 1918, CGNAT, unique-local, TEST-NETs ... (the same "
                                                    "as `runner --deny-private`).")] = False,
    allow_network: Annotated[list[str] | None, typer.Option("--allow-network", metavar="CIDR",
                                                            envvar=ENV["allow_networks"], callback=split_networks,
                                                            show_default=False, rich_help_panel="Settings",
                                                            help="Network (CIDR) always allowed, overriding the "
                                                                 "address policy (repeatable; the same as `runner "
                                                                 "--allow-network`).")] = None,
    host_rate: Annotated[float | None, typer.Option("--host-rate", metavar="PER_SECOND", min=0.001,
                                                    envvar="URLTESTER_HOST_RATE", show_default=False,
                                                    rich_help_panel="Settings",
                                                    help="Checks per second per target host, kept by the whole fleet "
                                                         "together (default unlimited; `runner limits set` overrides "
                                                         "per host).")] = None,
    host_connections: Annotated[int | None, typer.Option("--host-connections", metavar="N", min=1,
                                                         envvar="URLTESTER_HOST_CONNECTIONS", show_default=False,
                                                         rich_help_panel="Settings",
                                                         help="Checks at once per target host, fleet-wide (default "
                                                              "unlimited).")] = None,
) -> None:
    """Start a worker: a pool of threads (and processes) that check URLs from RabbitMQ.

    Waits for PostgreSQL and RabbitMQ if they are not up yet. Stops on SIGTERM or Ctrl-C, after the checks in flight
    (--shutdown-timeout).

    Under systemd (Type=notify) it reports READY, WATCHDOG and STATUS (checks/s, in flight); worker processes that keep
    dying (5 in 60 s) end it with exit 1. SIGUSR1 prints every thread's stack. See docs/operations.md.
    """
    from runner.metrics import MetricsError
    from runner.taskq.logs import configure_logging, install_stack_dumps, resolve
    from runner.taskq.supervisor import run_pool

    typed = {name: _from_command_line(ctx, name) for name in ("queue", "deny_private", "allow_network")}
    settings: Settings = ctx.obj.with_(
        queue=queue if typed["queue"] else None, region=region, host_rate=host_rate, host_connections=host_connections,
        deny_private=True if typed["deny_private"] and deny_private else None,
        allow_networks=tuple(allow_network) if typed["allow_network"] and allow_network else None)
    if settings.immediate:
        raise fail(
            "runner start needs RabbitMQ, but the broker is the in-memory default. Set "
            "URLTESTER_BROKER_URL=amqp://USER:PASSWORD@HOST:5672// (or --broker-url). Without a broker, "
            "`runner submit` checks URLs in-process.",
            EXIT_USAGE,
        )
    level = log_level.value
    fmt = resolve(log_format.value)
    configure_logging(level, fmt)
    install_stack_dumps()  # from now on, waiting for the services included
    options = PoolOptions(concurrency=concurrency, max_concurrency=max_concurrency, prefetch=prefetch,
                          shutdown_timeout=shutdown_timeout,
                          hold_budget=hold_budget, metrics_port=metrics_port, metrics_address=metrics_address,
                          **({"processes": processes} if processes else {}))
    _wait_for_services(settings)
    try:
        code = run_pool(functools.partial(check_service, settings), options, level, fmt)
    except MetricsError as exc:
        raise fail(f"--metrics-port: {exc}", EXIT_USAGE) from None
    raise typer.Exit(code)


def _preflight(settings: Settings) -> None:
    """Open the database (applying migrations) and declare the queues: one clear error if not."""
    from db import open_store
    from runner.taskq import open_broker

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

