"""The ``runner`` command: one typer app, its global options, and every command group.

The commands live by group in the modules beside this one; this module only registers
them, so imports point one way: main → command modules → common.
"""

from __future__ import annotations

from typing import Annotated

import typer

from runner.cli import (
    admin,
    alerts,
    cancelling,
    crawling,
    dead,
    history,
    importing,
    limits,
    serve,
    submitting,
    terminal,
    tokens,
    worker,
)
from runner.cli.common import EXIT_USAGE, fail, split_networks
from runner.errors import ConfigError
from runner.jobs.settings import DEFAULT_QUEUE, ENV, build, worker_env
from runner.version import VERSION

cli = typer.Typer(
    name="runner",
    help="urltester: test URLs at scale. Submit URLs, run workers, read results.\n\n"
    "Every setting is an option below and an environment variable (shown beside it); the "
    "option wins. With none set, urltester runs embedded: a SQLite file in your data dir, "
    "and checks in this process (memory://).\n\n"
    "Exit codes: 0 ok; 1 some input rejected or some check failed; 2 usage or configuration "
    "error; 3 database or broker unreachable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(dead.dead_app, name="dead")


def show_version(flag: bool) -> None:
    if flag:
        typer.echo(f"urltester {VERSION}")
        raise typer.Exit()


SETTINGS = "Settings"


@cli.callback()
def main_options(
    ctx: typer.Context,
    database_url: Annotated[str | None, typer.Option("--database-url", metavar="URL", envvar=ENV["database_url"],
                                                     rich_help_panel=SETTINGS, show_default=False,
                                                     help="Database: postgresql://USER:PASSWORD@HOST/DB or "
                                                          "sqlite:///PATH (default: a SQLite file in your data "
                                                          "dir).")] = None,
    broker_url: Annotated[str | None, typer.Option("--broker-url", metavar="URL", envvar=ENV["broker_url"],
                                                   rich_help_panel=SETTINGS, show_default=False,
                                                   help="Broker: amqp://USER:PASSWORD@HOST:5672/VHOST (default "
                                                        "memory://: checks run in this process).")] = None,
    queue: Annotated[str, typer.Option("--queue", metavar="NAME", envvar=ENV["queue"], rich_help_panel=SETTINGS,
                                       help="Queue name: one per fleet of workers.")] = DEFAULT_QUEUE,
    publish_timeout: Annotated[float, typer.Option("--publish-timeout", metavar="SECONDS",
                                                   envvar=ENV["publish_timeout"], min=0, rich_help_panel=SETTINGS,
                                                   help="Seconds a publish keeps retrying a lost broker before "
                                                        "failing.")] = 30.0,
    deny_private: Annotated[bool, typer.Option("--deny-private", envvar=ENV["deny_private"], rich_help_panel=SETTINGS,
                                               help="Checks also refuse loopback, RFC 1918, CGNAT and unique-local "
                                                    "addresses.")] = False,
    allow_network: Annotated[list[str] | None, typer.Option("--allow-network", metavar="CIDR",
                                                            envvar=ENV["allow_networks"], callback=split_networks,
                                                            rich_help_panel=SETTINGS, show_default=False,
                                                            help="Network (CIDR) always allowed, overriding the "
                                                                 "address policy (repeatable; the variable takes a "
                                                                 "comma-separated list).")] = None,
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    try:
        ctx.obj = build(database_url=database_url, broker_url=broker_url, queue=queue, publish_timeout=publish_timeout,
                        deny_private=deny_private, allow_networks=tuple(allow_network or ()), **worker_env())
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


cli.command()(worker.start)
cli.command()(submitting.submit)
cli.command()(submitting.results)
cli.command()(submitting.requeue)
cli.command()(cancelling.cancel)
cli.command()(history.urls)
cli.command()(history.history)
cli.command()(history.changes)
cli.command("import", help=importing.IMPORT_HELP)(importing.import_)
cli.command()(crawling.crawl)
cli.command()(admin.prune)
cli.command()(admin.status)
cli.command()(admin.doctor)
cli.command()(terminal.tui)
db_cli.command("upgrade")(admin.db_upgrade)
cli.command()(serve.serve)
cli.add_typer(tokens.token_app, name="token")
cli.add_typer(limits.limits_app, name="limits")
cli.add_typer(alerts.alerts_app, name="alerts")


def main() -> None:
    cli(prog_name="runner")
