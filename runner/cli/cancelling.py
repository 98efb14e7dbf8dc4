"""``runner cancel``: take back queued jobs (a batch, some jobs, or every one) before they
are checked."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from runner.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, handled, runtime_for


@handled
def cancel(
    ctx: typer.Context,
    jobs: Annotated[list[int] | None, typer.Argument(metavar="[JOB]...", help="Job ids to cancel.",
                                                     show_default=False)] = None,
    batch: Annotated[str | None, typer.Option("--batch", metavar="B",
                                              help="Cancel the queued jobs of this batch (name or id).",
                                              show_default=False)] = None,
    all_queued: Annotated[bool, typer.Option("--all-queued", help="Cancel every queued job.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y",
                                      help="Do not ask: for scripts (without a terminal and without --yes nothing is "
                                           "cancelled, exit 2).")] = False,
) -> None:
    """Take back queued jobs: each becomes 'cancelled' and the workers drop its message
    without checking it. Done and running jobs, and every stored result, stay as they are.

    Give exactly one of JOB ids, --batch B or --all-queued. On a terminal it shows how many
    and asks first; --yes does not ask (scripts need it). Exit 0 done (or nothing to
    cancel), 1 not confirmed, 2 usage (or no terminal and no --yes), 3 database away.
    """
    chosen = [name for name, given in (("JOB", bool(jobs)), ("--batch", batch is not None),
                                       ("--all-queued", all_queued)) if given]
    if len(chosen) != 1:
        raise fail("give exactly one of JOB ids, --batch B or --all-queued"
                   + (f" (got {' and '.join(chosen)})" if chosen else ""), EXIT_USAGE)
    if jobs and any(j < 1 for j in jobs):
        raise fail("job ids are whole numbers from 1", EXIT_USAGE)
    what = (f"of batch {batch!r}" if batch is not None else
            f"among job{'s' if len(jobs or ()) != 1 else ''} {', '.join(map(str, jobs or ()))}" if jobs else "in all")
    with runtime_for(ctx) as rt:
        if not yes:
            n = rt.cancel(batch=batch, job_ids=jobs, count_only=True)
            if n == 0:
                typer.echo(f"no queued jobs {what}: nothing to cancel")
                raise typer.Exit(EXIT_OK)
            asked = f"cancel {n:,} queued job{'s' if n != 1 else ''} {what}"
            if not sys.stdin.isatty():
                raise fail(f"{asked}? Not asked: no terminal; add --yes to cancel them", EXIT_USAGE)
            if not typer.confirm(f"{asked}?", default=False):
                typer.echo("nothing cancelled", err=True)
                raise typer.Exit(EXIT_FAILED)
        n = rt.cancel(batch=batch, job_ids=jobs)
    typer.echo(f"cancelled {n:,} queued job{'s' if n != 1 else ''} {what}")
