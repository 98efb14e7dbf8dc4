"""``runner crawl``: check a site from its home page, following the links in scope."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from runner.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    fail,
    handled,
    plural,
    runtime_for,
    tell_alerts,
    with_check_options,
)


class Scope(StrEnum):
    host = "host"
    domain = "domain"
    prefix = "prefix"


@handled
@with_check_options
def crawl(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="Where the crawl starts (http or https pages).")],
    depth: Annotated[int, typer.Option("--depth", min=0,
                                       help="Follow links this many pages deep from a start URL (0: check the start "
                                            "URLs only).")] = 3,
    scope: Annotated[Scope, typer.Option("--scope",
                                         help="Pages followed: host (a start URL's host), domain (its domain and "
                                              "subdomains) or prefix (under a start URL's folder). Links elsewhere are "
                                              "checked, never followed.")] = Scope.host,
    max_urls: Annotated[int, typer.Option("--max-urls", min=1, help="Check at most this many URLs in all.")] = 100_000,
    no_robots: Annotated[bool, typer.Option("--no-robots",
                                            help="Ignore robots.txt (obeyed by default for the pages the crawl "
                                                 "follows).")] = False,
    batch: Annotated[str | None, typer.Option("--batch", help="Name of the crawl's batch (default: 'crawl DATE TIME').",
                                              show_default=False)] = None,
    wait: Annotated[bool, typer.Option("--wait",
                                       help="Wait for the crawl to end and print its summary; exit 1 if a link is "
                                            "broken.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", min=0,
                                                       help="Give up waiting after this many seconds (exit 1).",
                                                       show_default=False)] = None,
    options: Any = None,  # the check options' flags (with_check_options)
) -> None:
    """Crawl a site: check its pages and every link they hold, each URL once.

    Pages in scope that are HTML and ok have their links added to the crawl's batch;
    every result keeps the pages that link to it (`runner results --batch NAME --failed`).
    """
    from db.batches import batch_summary
    from runner.errors import InvalidInput
    from runner.jobs.crawl import start_crawl
    from runner.jobs.runtime import default_batch_name
    from runner.jobs.urls import normalise
    from runner.text import mask_url, printable

    roots: list[str] = []
    for text in urls:
        try:
            roots.append(normalise(text))
        except InvalidInput as exc:
            raise fail(f"{text}: {exc}", EXIT_USAGE) from None
    with runtime_for(ctx) as rt:
        made = rt.store.create_batch(batch or default_batch_name("crawl"))
        started = start_crawl(rt.store, rt.intake, batch_id=made.id, roots=roots, options=options,
                              scope=scope.value, depth=depth, max_urls=max_urls, robots=not no_robots)
        typer.echo(f"crawl {made.id} ({printable(made.name)}): {len(started)} start URL{plural(len(started))}: "
                   + ", ".join(printable(mask_url(u)) for u in started))
        if not wait:
            # The in-memory broker (the embedded default) runs the checks in this process: it
            # must stay until the crawl ends. RabbitMQ already holds every message: at once.
            rt.broker.flush(wait_timeout)
            tell_alerts(rt, "crawl")
            raise typer.Exit(EXIT_OK)
        summary, complete = rt.wait(made.id, timeout=wait_timeout)
        if rt.settings.immediate:
            rt.broker.flush(wait_timeout)
            summary = batch_summary(rt.store, made.id)
        typer.echo(f"checked {summary.done} URL{plural(summary.done)}: {summary.ok} ok, {summary.failed} broken")
        if summary.failed:
            typer.echo(f"broken links and where they are: runner results --batch {made.id} --failed")
        if not complete:
            typer.echo(f"runner: timed out after {wait_timeout:g} s waiting for the crawl", err=True)
        tell_alerts(rt, "crawl")
        raise typer.Exit(EXIT_FAILED if summary.failed or not complete else EXIT_OK)
