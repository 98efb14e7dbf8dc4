"""The ``runner`` command: one typer app, its global options, and every command group.

The commands live by group in the modules beside this one; this module only registers
them, so imports point one way: app → command modules → common.
"""

from __future__ import annotations

from typing import Annotated

import typer

from runner.cli import admin, importing, limits, submitting, terminal, worker
from runner.cli.common import EXIT_USAGE, fail
from runner.errors import ConfigError
from runner.jobs.settings import from_env

app = typer.Typer(
    name="runner",
    help="urltester: test URLs at scale. Submit URLs, run workers, read results.\n\n"
    "Settings: URLTESTER_DATABASE_URL (default: a SQLite file in your data dir) and "
    "URLTESTER_BROKER_URL (default memory://: checks run in this process).\n\n"
    "Exit codes: 0 ok; 1 some input rejected or some check failed; 2 usage or configuration "
    "error; 3 database or broker unreachable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(limits.limits_app, name="limits")


@app.callback()
def main_options(
    ctx: typer.Context,
    database_url: Annotated[str | None, typer.Option(help="Database URL (overrides URLTESTER_DATABASE_URL).", show_default=False)] = None,
    broker_url: Annotated[str | None, typer.Option(help="Broker URL (overrides URLTESTER_BROKER_URL).", show_default=False)] = None,
    queue: Annotated[str | None, typer.Option(help="Queue name (default urltester; URLTESTER_QUEUE).", show_default=False)] = None,
) -> None:
    try:
        ctx.obj = from_env(database_url=database_url, broker_url=broker_url, queue=queue)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_USAGE) from None


app.command()(worker.start)
app.command()(submitting.submit)
app.command()(submitting.results)
app.command()(submitting.requeue)
app.command("import", help=importing.IMPORT_HELP)(importing.import_)
app.command()(admin.prune)
app.command()(admin.status)
app.command()(admin.doctor)
app.command()(terminal.tui)
db_app.command("upgrade")(admin.db_upgrade)


def main() -> None:
    app(prog_name="runner")
