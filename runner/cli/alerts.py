"""``runner alerts add|list|remove|test``: who hears of which changes, through Apprise.

Sending is the sender thread's (runner start, runner serve); these commands only configure
alerts and, with ``test``, send one message now. See docs/alerts.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from db import Store, open_store
from runner.cli.common import EXIT_FAILED, EXIT_USAGE, fail, handled
from runner.jobs.report import iso
from runner.text import printable

if TYPE_CHECKING:
    from runner.check.policy import AddressPolicy

alerts_app = typer.Typer(help="Alerts: changes told through Apprise (Slack, Teams, Discord, ntfy, email, webhooks, …).",
                         no_args_is_help=True)


@contextmanager
def _store(ctx: typer.Context) -> Iterator[Store]:
    store = open_store(ctx.obj.database_url, max_connections=1)  # alerts need no broker
    try:
        yield store
    finally:
        store.close()


def _policy(ctx: typer.Context) -> AddressPolicy:
    from runner.check.policy import AddressPolicy

    return AddressPolicy(deny_private=ctx.obj.deny_private, allow=ctx.obj.allow_networks)


def _read_urls(path: Path) -> list[str]:
    from runner.errors import InvalidURL
    from runner.jobs.urls import normalise

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"--state-of {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}", EXIT_USAGE) from None
    urls = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            urls.append(normalise(line))
        except InvalidURL as exc:
            raise fail(f"--state-of {path}:{number}: {exc}", EXIT_USAGE) from None
    if not urls:
        raise fail(f"--state-of {path}: no URL in it", EXIT_USAGE)
    return urls


@alerts_app.command("add")
@handled
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The alert's name (unique).")],
    apprise_url: Annotated[str, typer.Argument(metavar="APPRISE_URL",
                                               help="Where to tell: slack://…, discord://…, ntfy://…, mailto://…, "
                                                    "json://… (docs/alerts.md).")],
    on: Annotated[str | None, typer.Option("--on", metavar="KINDS", show_default=False,
                                           help="Changes to tell, comma-separated: new_failure, recovered, new, "
                                                "still_failing, slower (default new_failure,recovered).")] = None,
    batch: Annotated[str | None, typer.Option("--batch", metavar="B",
                                              help="Only changes of URLs checked in batch B.")] = None,
    contains: Annotated[str | None, typer.Option("--contains", metavar="TEXT",
                                                 help="Only URLs containing TEXT (case-insensitive).")] = None,
    state_of: Annotated[Path | None, typer.Option("--state-of", metavar="URLS-FILE",
                                                  help="Only the URLs listed in this file (one a line).")] = None,
    reminder: Annotated[str | None, typer.Option("--reminder", metavar="AGE", show_default=False,
                                                 help="still_failing: remind at most this often per URL, e.g. 24h "
                                                      "(default 24h; implies --on …,still_failing).")] = None,
    min_regions: Annotated[int | None, typer.Option("--min-regions", metavar="N", show_default=False,
                                                    help="Jobs with regions: tell a change once N regions agree "
                                                         "(default: the job's quorum).")] = None,
) -> None:
    """Tell APPRISE_URL of changes: by default new failures and recoveries, one message each
    (one summary when a batch brings more than 10)."""
    from runner.jobs import alerts

    if not name.strip() or len(name) > 100:
        raise fail("NAME: give the alert a name of 1 to 100 characters", EXIT_USAGE)
    if sum(x is not None for x in (batch, contains, state_of)) > 1:
        raise fail("--batch, --contains and --state-of: use at most one of them", EXIT_USAGE)
    try:
        kinds = alerts.parse_kinds(on) if on is not None else alerts.DEFAULT_KINDS
    except ValueError as exc:
        raise fail(f"--on: {exc}", EXIT_USAGE) from None
    reminder_s = None
    if reminder is not None:
        try:
            reminder_s = alerts.parse_reminder(reminder)
        except ValueError as exc:
            raise fail(f"--reminder: {exc}", EXIT_USAGE) from None
        if on is None:
            kinds = (*kinds, "still_failing")
        elif "still_failing" not in kinds:
            raise fail("--reminder: reminders are of still_failing; add it to --on", EXIT_USAGE)
    if min_regions is not None and min_regions < 1:
        raise fail(f"--min-regions: {min_regions} is not a number of regions (1 or more)", EXIT_USAGE)
    if contains is not None and not contains.strip():
        raise fail("--contains: give some text", EXIT_USAGE)
    urls = _read_urls(state_of) if state_of is not None else None
    from db.alerts import AlertNameTaken

    with _store(ctx) as store:
        try:
            alert = alerts.add(store, name, apprise_url, kinds=kinds, batch=batch, contains=contains, urls=urls,
                               reminder_s=reminder_s, min_regions=min_regions, policy=_policy(ctx))
        except AlertNameTaken as exc:
            raise fail(str(exc), EXIT_USAGE) from None
    typer.echo(f"alert {printable(alert.name)} added: {', '.join(alert.kinds)} → "
               f"{printable(alerts.masked_target(alert.target))}")


@alerts_app.command("list")
@handled
def list_(ctx: typer.Context) -> None:
    """Alerts with their (masked) target, what they tell, and their last delivery or error."""
    from db.alerts import list_alerts
    from runner.jobs.alerts import masked_target

    with _store(ctx) as store:
        rows = list_alerts(store.dialect)
    if not rows:
        typer.echo("no alerts: add one with `runner alerts add NAME APPRISE_URL`", err=True)
        return
    for a in rows:
        scope = (f"batch {a.batch}" if a.batch else f"URLs containing {a.contains!r}" if a.contains
                 else "URLs of --state-of" if a.has_urls else "every URL")
        extra = []
        if a.reminder_s:
            extra.append(f"reminder every {a.reminder_s / 3600:g}h")
        if a.min_regions:
            extra.append(f"min {a.min_regions} regions")
        typer.echo(f"{printable(a.name)}  {printable(masked_target(a.target))}")
        typer.echo(f"  on {', '.join(a.kinds)}; {printable(scope)}{'; ' + '; '.join(extra) if extra else ''}")
        typer.echo(f"  last sent: {iso(a.last_sent_at) or 'never'}; waiting: {a.pending}; given up: {a.failed}")
        if a.last_error:
            typer.echo(f"  last error: {iso(a.last_error_at)} {printable(a.last_error, 300)}")


@alerts_app.command("remove")
@handled
def remove(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The alert's name.")]) -> None:
    """Remove an alert (and its messages not yet delivered)."""
    from db.alerts import remove_alert

    with _store(ctx) as store:
        if not remove_alert(store.dialect, name):
            raise fail(f"no alert named {printable(name)!r}", EXIT_FAILED)
    typer.echo(f"removed {printable(name)}")


@alerts_app.command("test")
@handled
def test(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME", help="The alert's name.")]) -> None:
    """Send a test message now: exit 1 with the service's reason when it fails."""
    from runner.jobs import alerts

    with _store(ctx) as store:
        try:
            reason = alerts.send_test(store, name, policy=_policy(ctx))
        except LookupError:
            raise fail(f"no alert named {printable(name)!r}", EXIT_FAILED) from None
    if reason is not None:
        raise fail(f"alert {name}: not delivered: {reason}", EXIT_FAILED)
    typer.echo(f"alert {printable(name)}: test message delivered")
