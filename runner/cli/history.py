"""``runner urls``, ``runner history`` and ``runner changes``: URLs over time (issue 21;
docs/history.md)."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer

from db import URL_STATES
from runner.cli.common import EXIT_FAILED, EXIT_USAGE, fail, handled, runtime_for, value

UrlState = StrEnum("UrlState", {s: s for s in URL_STATES})  # type: ignore[misc]  # members from the one list
DEFAULT_WINDOW = "30d"


class UrlSort(StrEnum):
    state = "state"
    url = "url"
    latency = "latency"
    since = "since"


class UrlsFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class HistoryFormat(StrEnum):
    table = "table"
    json = "json"


class ChangesFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    junit = "junit"


RegionOpt = Annotated[str | None, typer.Option("--region",
                                               help="Only this region's checks (a job that named regions has one per "
                                                    "region).", show_default=False)]


def _since(option: str, text: str | None) -> datetime | None:
    """An age ago or an ISO time; malformed: exit 2 naming the option."""
    from runner.jobs.when import parse_since

    if text is None:
        return None
    try:
        return parse_since(text)
    except ValueError as exc:
        raise fail(f"{option}: {exc}", EXIT_USAGE) from None


def _window(text: str) -> datetime:
    from runner.jobs.history import parse_window

    try:
        return parse_window(text)
    except ValueError as exc:
        raise fail(f"--window: {exc}", EXIT_USAGE) from None


def _slower(text: str) -> float:
    from runner.jobs.history import parse_slower

    try:
        return parse_slower(text)
    except ValueError as exc:
        raise fail(f"--slower: {exc}", EXIT_USAGE) from None


@handled
def urls(
    ctx: typer.Context,
    state: Annotated[UrlState | None, typer.Option("--state",
                                                   help="Only URLs in this state: ok, slow, failing or pending.",
                                                   show_default=False)] = None,
    changed_since: Annotated[str | None, typer.Option("--changed-since",
                                                      help="Only URLs whose state changed since: an age (30m, 2h, 7d) "
                                                           "or an ISO time.", show_default=False)] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only URLs with a job in this batch (name or id).",
                                              show_default=False)] = None,
    contains: Annotated[str | None, typer.Option("--contains", help="Only URLs containing this text.",
                                                 show_default=False)] = None,
    window: Annotated[str, typer.Option("--window",
                                        help="Checks, uptime and percentiles over this age.")] = DEFAULT_WINDOW,
    sort: Annotated[UrlSort, typer.Option("--sort",
                                          help="state (failing first), url, latency (slowest last check first) or "
                                               "since (latest change first).")] = UrlSort.state,
    limit: Annotated[int | None, typer.Option("--limit", min=1,
                                              help="At most this many URLs (default: 100 for table, all for json/csv).",
                                              show_default=False)] = None,
    region: RegionOpt = None,
    fmt: Annotated[UrlsFormat, typer.Option(
        "--format", "-f", help="table, json (one object per URL per line) or csv.")] = UrlsFormat.table,
) -> None:
    """One row per URL with its state and latest result, however many jobs checked it."""
    from db.urls import UrlFilter, find_batch, list_urls
    from runner.jobs.history import dumps, url_object, url_table, write_urls_csv

    changed = _since("--changed-since", changed_since)
    start = _window(window)
    with runtime_for(ctx) as rt:
        batch_ids = None
        if batch is not None:
            found = find_batch(rt.store, batch)
            if found is None:
                raise fail(f"--batch: no batch {batch!r}", EXIT_USAGE)
            batch_ids = (found,)
        flt = UrlFilter(state=value(state), changed_since=changed, batch_ids=batch_ids, text=contains)
        views = list_urls(rt.store, flt, since=start, sort=sort.value,
                          limit=limit if limit is not None or fmt != UrlsFormat.table else 100, region=region)
        if fmt == UrlsFormat.json:
            for view in views:
                typer.echo(dumps(url_object(view)))
        elif fmt == UrlsFormat.csv:
            write_urls_csv(views, sys.stdout)
        else:
            for line in url_table(views):
                typer.echo(line)


@handled
def history(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The URL, as submitted ('example.com' means https://example.com/).")],
    since: Annotated[str | None, typer.Option("--since",
                                              help="Changes and checks since: an age (30m, 2h, 7d) or an ISO time; "
                                                   "also the window of the figures (default 30d).",
                                              show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many recent checks and changes.")] = 20,
    region: RegionOpt = None,
    fmt: Annotated[HistoryFormat, typer.Option("--format", "-f",
                                               help="table or json (one object).")] = HistoryFormat.table,
) -> None:
    """One URL's story: its state and since when, its changes, its recent checks."""
    from db.urls import get_url, recent_checks, url_changes
    from runner.errors import InvalidURL
    from runner.jobs.history import dumps, history_object, history_table
    from runner.jobs.urls import Rejected, normalise
    from runner.text import mask_url, printable

    start = _since("--since", since)
    try:
        normalised = normalise(url)
    except InvalidURL as exc:  # submit's own message for it
        raise fail(f"rejected {Rejected(url, str(exc))}", EXIT_FAILED) from None
    with runtime_for(ctx) as rt:
        view = get_url(rt.store, normalised, since=start or _window(DEFAULT_WINDOW), region=region)
        if view is None or view.last_job_id is None:
            raise fail(f"{printable(mask_url(normalised))} was never checked", EXIT_FAILED)
        changes = url_changes(rt.store, view, since=start, limit=limit)
        recent = recent_checks(rt.store, view.id, since=start, limit=limit, region=region)
        if fmt == HistoryFormat.json:
            typer.echo(dumps(history_object(view, changes, recent)))
        else:
            for line in history_table(view, changes, recent):
                typer.echo(line)


@handled
def changes(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option("--since",
                                              help="URLs checked since (an age or an ISO time), against their check "
                                                   "before.", show_default=False)] = None,
    batch: Annotated[str | None, typer.Option("--batch",
                                              help="Each URL of this batch (name: its latest; or id) against its check "
                                                   "just before it.", show_default=False)] = None,
    against: Annotated[str | None, typer.Option("--against",
                                                help="With --batch: against each URL's check in this batch instead.",
                                                show_default=False)] = None,
    slower: Annotated[str, typer.Option("--slower",
                                        help="slower: ok both times and at least this factor of the earlier time (and "
                                             "100 ms more).")] = "2x",
    fmt: Annotated[ChangesFormat, typer.Option(
        "--format", "-f", help="table, json (one object per URL per line), csv or junit.")] = ChangesFormat.table,
) -> None:
    """What changed: new failures, recoveries, still failing, new, gone, slower, changed.

    Exit 1 when there is at least one new failure, else 0: the cron line
    `runner import urls.txt --batch nightly --wait --quiet; runner changes --batch nightly`
    mails only news.
    """
    from runner.jobs.history import (
        changes_table,
        compare,
        diff_object,
        dumps,
        write_changes_csv,
        write_changes_junit,
    )

    if (since is None) == (batch is None):
        raise fail("give either --since AGE or --batch B", EXIT_USAGE)
    if against is not None and batch is None:
        raise fail("--against needs --batch", EXIT_USAGE)
    start = _since("--since", since)
    factor = _slower(slower)
    with runtime_for(ctx) as rt:
        result = compare(rt.store, batch=batch, against=against, since=start, slower=factor)
        if fmt == ChangesFormat.json:
            for diff in result.diffs:
                typer.echo(dumps(diff_object(diff)))
        elif fmt == ChangesFormat.csv:
            write_changes_csv(result.diffs, sys.stdout)
        elif fmt == ChangesFormat.junit:
            write_changes_junit(result.diffs, sys.stdout, name=f"urltester changes {batch or since}")
        else:
            for line in changes_table(result.diffs):
                typer.echo(line)
        if result.new_failures:
            raise typer.Exit(EXIT_FAILED)
