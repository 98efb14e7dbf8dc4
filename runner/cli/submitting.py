"""``runner submit``, ``runner results`` and ``runner requeue``: jobs in, results out."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from db import JobFilter
from runner.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    FailOn,
    FailOnOpt,
    NoWorkerAfterOpt,
    Outcome,
    QuorumOpt,
    RegionsOpt,
    ResultsFormat,
    State,
    fail,
    handled,
    new_failures,
    parse_age,
    parse_since,
    runtime_for,
    tell_alerts,
    value,
    with_check_options,
)


@handled
@with_check_options
def submit(
    ctx: typer.Context,
    urls: Annotated[list[str],
                    typer.Argument(help="URLs to check (http or https; 'example.com' means https://example.com/).")],
    wait: Annotated[bool, typer.Option("--wait",
                                       help="Wait for the results and print them; exit 0 only if every check is "
                                            "ok.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", min=0,
                                                       help="Give up waiting after this many seconds (exit 1).",
                                                       show_default=False)] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Label for this batch (default: 'submit DATE TIME').",
                                              show_default=False)] = None,
    fail_on: FailOnOpt = FailOn.any,
    options: Any = None,  # the check options' flags (with_check_options)
    regions: RegionsOpt = None, quorum: QuorumOpt = None, no_worker_after: NoWorkerAfterOpt = None,
) -> None:
    """Validate, record and enqueue URLs; print their job ids (one 'ID URL' per line).

    With --regions each URL is checked once per region, and the job is ok when --quorum of them are.
    """
    from runner.jobs.report import table_lines
    from runner.text import mask_url, printable

    ctx.obj = ctx.obj.with_(no_worker_after=no_worker_after)
    with runtime_for(ctx) as rt:
        if (warning := rt.broker_warning()) is not None:  # said now, not after the retries
            typer.echo(f"runner: {printable(warning)}", err=True)
        report = rt.submit(urls, options=options, batch=batch, regions=regions, quorum=quorum)
        for rejected in report.rejected:
            typer.echo(f"runner: rejected {printable(str(rejected))}", err=True)
        views = rt.store.list_jobs(JobFilter(ids=tuple(report.job_ids)), order="oldest",
                                   limit=len(report.job_ids)) if report.job_ids else []
        for view in views:
            typer.echo(f"{view.id}\t{printable(mask_url(view.url))}")
        code = EXIT_FAILED if report.rejected else EXIT_OK
        if not report.job_ids:
            raise typer.Exit(EXIT_FAILED if report.rejected else EXIT_OK)
        if wait:
            _, complete = rt.wait(report.batch.id, timeout=wait_timeout)
            done_views = rt.store.list_jobs(JobFilter(ids=tuple(report.job_ids)), order="oldest",
                                            limit=len(report.job_ids))
            for line in table_lines(done_views, regions=rt.region_results):
                typer.echo(line)
            if not complete:
                typer.echo(f"runner: timed out after {wait_timeout:g} s waiting for results", err=True)
            if not complete or (any(v.outcome != "ok" for v in done_views)
                                and (fail_on == FailOn.any or new_failures(rt.store, report.batch.id))):
                code = EXIT_FAILED
        else:
            # The in-memory broker (the embedded default) runs the checks in this process: it
            # must stay until they finish. RabbitMQ already holds every message: at once.
            rt.broker.flush(wait_timeout)
        tell_alerts(rt, "submit")
        raise typer.Exit(code)



@handled
def results(
    ctx: typer.Context,
    state: Annotated[State | None, typer.Option("--state", help="Only jobs in this state.", show_default=False)] = None,
    outcome: Annotated[Outcome | None, typer.Option("--outcome", metavar="OUTCOME", show_default=False,
                                                              help="Only results with this outcome: ok, http_error, "
                                                                   "assertion_failed, dns_error, connect_refused, "
                                                                   "connect_timeout, read_timeout, deadline_exceeded, "
                                                                   "tls_error, too_many_redirects, too_large, "
                                                                   "invalid_response or blocked.")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Batch name or id.")] = None,
    since: Annotated[str | None, typer.Option("--since",
                                              help="Submitted since: an age (30m, 2h, 7d) or an ISO time.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only checks that failed.")] = False,
    url: Annotated[str | None, typer.Option("--url",
                                            help="Only jobs of this URL (as submitted: 'example.com' means "
                                                 "https://example.com/).", show_default=False)] = None,
    contains: Annotated[str | None, typer.Option("--contains", help="Only jobs whose URL contains this text.",
                                                 show_default=False)] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1,
                                              help="At most this many jobs (default: 100 for table, all for json/csv).",
                                              show_default=False)] = None,
    fmt: Annotated[ResultsFormat, typer.Option("--format", "-f",
                                               help="table, json (one object per job per line, with its regions), csv "
                                                    "(one row per job and region) or junit (JUnit XML: one test case "
                                                    "per job, each region's result in its "
                                                    "output).")] = ResultsFormat.table,
) -> None:
    """List jobs and their results, newest first (what the old get_jobs returned).

    json, csv and junit stream every matching job (a million rows with flat memory).
    """
    from runner.jobs.report import table_lines, write_csv, write_json, write_junit

    fmt_name, state = fmt.value, value(state)
    exact = None
    if url is not None:
        from runner.errors import InvalidURL
        from runner.jobs.urls import Rejected, normalise
        from runner.text import printable

        try:
            exact = normalise(url)
        except InvalidURL as exc:  # submit's own message for it
            raise fail(f"rejected {printable(str(Rejected(url, str(exc))))}", EXIT_FAILED) from None
    flt = JobFilter(state=state, outcome=value(outcome), batch=batch, since=parse_since(since) if since else None,
                    failed=failed, url=exact, text=contains)
    with runtime_for(ctx) as rt:
        lookup = rt.region_results
        if fmt_name == "table":
            views = rt.store.list_jobs(flt, limit=limit or 100)
            for line in table_lines(views, regions=lookup, referrers=rt.referrers):
                typer.echo(line)
            if len(views) == (limit or 100) and (total := rt.store.count_jobs(flt)) > len(views):
                # On stderr: a script reading the table sees only rows; a person sees the cut.
                typer.echo(f"{len(views)} of {total} shown (--limit N, or --format json for all)", err=True)
            return
        if fmt_name == "junit":
            # The suite's counts lead the XML: count first (SQL), then stream the rows.
            from dataclasses import replace

            total = rt.store.count_jobs(flt)
            failures = rt.store.count_jobs(replace(flt, failed=True))
            skipped = 0 if state == "done" else sum(
                rt.store.count_jobs(replace(flt, state=s)) for s in ("queued", "running",
                    "cancelled") if state in (None, s))
            if limit is not None:
                total = min(total, limit)
            rows = rt.store.iter_jobs(flt, order="oldest", limit=limit)
            write_junit(rows, sys.stdout, name=f"urltester {batch}" if batch else "urltester",
                        tests=total, failures=min(failures, total), skipped=min(skipped, total), regions=lookup)
            return
        rows = rt.store.iter_jobs(flt, order="newest", detail=(fmt_name == "json"), limit=limit)
        (write_json if fmt_name == "json" else write_csv)(rows, sys.stdout, regions=lookup, referrers=rt.referrers)



@handled
def requeue(
    ctx: typer.Context,
    stale: Annotated[str, typer.Option("--stale",
                                       help="Re-publish jobs not done whose message is older than this age (90s, 30m, "
                                            "2h).")],
) -> None:
    """Re-publish jobs whose message was lost (a purged queue, a failed publish)."""
    age = parse_age(stale)
    with runtime_for(ctx) as rt:
        n = rt.intake.republish(older_than=age)
        # The in-memory broker (the embedded default) runs the checks in this process.
        rt.broker.flush()
        typer.echo(f"re-published {n} job{'s' if n != 1 else ''}")
        tell_alerts(rt, "requeue")

