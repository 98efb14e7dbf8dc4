"""``runner start``: the worker process, built here from the settings (the composition root)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any

import typer

from db import StoreUnavailable
from runner.cli.common import EXIT_USAGE, LogLevel, fail, handled, split_networks
from runner.errors import BrokerError
from runner.jobs.settings import ENV, Settings

if TYPE_CHECKING:
    from runner.jobs.worker import CheckService


def check_service(settings: Settings) -> CheckService:
    """Build one worker process's service (run in each pool process, after spawn)."""
    from runner.jobs.runtime import Runtime
    from runner.jobs.worker import CheckService

    return CheckService(Runtime(settings, db_connections=4))

def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """True when ``name`` was typed after ``start``: its variable is already read by the
    same option on ``runner`` itself, which must not be overridden by the variable again."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


WORKER = "Worker"


@handled
def start(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", metavar="N", min=1, max=1024, envvar="URLTESTER_CONCURRENCY", rich_help_panel=WORKER,
                                             help="Worker threads per process (checks wait on the network, so threads are cheap).")] = 128,
    processes: Annotated[int | None, typer.Option("--processes", "-p", metavar="N", min=1, max=256, envvar="URLTESTER_PROCESSES", rich_help_panel=WORKER,
                                                  help="Worker processes (default: number of cores).", show_default=False)] = None,
    prefetch: Annotated[int | None, typer.Option("--prefetch", metavar="N", min=1, max=65535, envvar="URLTESTER_PREFETCH", rich_help_panel=WORKER,
                                                 help="Unacked messages per process (default: concurrency).", show_default=False)] = None,
    shutdown_timeout: Annotated[float, typer.Option("--shutdown-timeout", metavar="SECONDS", min=0, envvar="URLTESTER_SHUTDOWN_TIMEOUT", rich_help_panel=WORKER,
                                                    help="Seconds in-flight checks get to finish on SIGTERM/SIGINT.")] = 30.0,
    hold_budget: Annotated[float, typer.Option("--hold-budget", metavar="SECONDS", min=1, envvar="URLTESTER_HOLD_BUDGET", rich_help_panel=WORKER,
                                               help="Seconds a message may be held before its calls not yet started are handed on in a new message; keep it well under RabbitMQ's consumer_timeout (30 min by default).")] = 600.0,
    log_level: Annotated[LogLevel, typer.Option("--log-level", envvar="URLTESTER_LOG_LEVEL", case_sensitive=False, rich_help_panel=WORKER,
                                                help="Least severe log records written.")] = LogLevel.info,
    queue: Annotated[str | None, typer.Option("--queue", "-Q", metavar="NAME", envvar=ENV["queue"], show_default=False, rich_help_panel="Settings",
                                              help="Queue to consume (the same as `runner --queue`; default urltester).")] = None,
    deny_private: Annotated[bool, typer.Option("--deny-private", envvar=ENV["deny_private"], rich_help_panel="Settings",
                                               help="Also refuse loopback, RFC 1918, CGNAT and unique-local addresses (the same as `runner --deny-private`).")] = False,
    allow_network: Annotated[list[str] | None, typer.Option("--allow-network", metavar="CIDR", envvar=ENV["allow_networks"], callback=split_networks, show_default=False, rich_help_panel="Settings",
                                                            help="Network (CIDR) always allowed, overriding the address policy (repeatable; the same as `runner --allow-network`).")] = None,
) -> None:
    """Start a worker: a pool of threads (and processes) that check URLs from RabbitMQ.

    Waits for PostgreSQL and RabbitMQ if they are not up yet. Stops on SIGTERM or Ctrl-C, after the checks in flight (--shutdown-timeout).
    """
    from runner.taskq.pool import PoolOptions, configure_logging, run_pool

    typed = {name: _from_command_line(ctx, name) for name in ("queue", "deny_private", "allow_network")}
    settings: Settings = ctx.obj.with_(
        queue=queue if typed["queue"] else None,
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
    configure_logging(level)
    options = PoolOptions(concurrency=concurrency, prefetch=prefetch, shutdown_timeout=shutdown_timeout,
                          hold_budget=hold_budget, **({"processes": processes} if processes else {}))
    _wait_for_services(settings)
    raise typer.Exit(run_pool(functools.partial(check_service, settings), options, level))


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

