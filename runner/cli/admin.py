"""``runner status``, ``doctor``, ``db upgrade`` and ``prune``: looking after a deployment."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from db import StoreError
from runner.cli.common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    handled,
    parse_age,
    plural,
    runtime_for,
)
from runner.errors import BrokerError, ConfigError
from runner.jobs.settings import Settings
from runner.text import printable


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with a Z, as `runner results --format json` writes times."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def status_document(settings: Settings, st: Any, crawls: Any = ()) -> dict[str, Any]:
    """`runner status --json`: stable keys (new ones may be added, none renamed), passwords masked."""
    c = st.counts
    return {
        "database": settings.database_shown,
        "broker": settings.broker_shown,
        "in_process": settings.immediate,
        "jobs": {"queued": c.queued, "running": c.running, "done": c.done, "cancelled": c.cancelled,
                 "ok": c.ok, "failed": c.failed,
                 "unpublished": c.unpublished},
        "outcomes": dict(sorted(c.by_outcome.items())),
        "checks_last_minute": c.done_last_minute,
        "queue": None if st.queue is None else {
            "name": settings.queue, "ready": st.queue.ready, "consumers": st.queue.consumers, "dead": st.queue.dead},
        "broker_error": st.broker_error,
        "regions": {region: None if depth is None else {"ready": depth.ready, "consumers": depth.consumers,
                                                         "dead": depth.dead}
                    for region, depth in sorted(st.regions.items())},
        "workers": [{"host": w.host, "pid": w.pid, "queue": w.queue, "region": w.region, "concurrency": w.concurrency,
                     "processed": w.processed, "started_at": iso(w.started_at), "last_seen": iso(w.last_seen)}
                    for w in st.workers],
        "crawls": [{"batch": c.batch_id, "name": c.name, "checked": c.done, "pending": c.pending, "found": c.found,
                    "max_urls": c.max_urls, "robots_skipped": c.robots_skipped} for c in crawls],
    }


@handled
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json",
                                          help="One JSON object (stable keys) instead of lines, for scripts and "
                                               "monitoring.")] = False,
) -> None:
    """Queue depth, jobs by state, workers alive and throughput."""
    with runtime_for(ctx) as rt:
        st = rt.status()
        from db.crawls import crawls_going

        crawls = crawls_going(rt.store)
        if as_json:
            typer.echo(json.dumps(status_document(rt.settings, st, crawls)))
            return
        c = st.counts
        typer.echo(f"database  {rt.settings.database_shown}")
        typer.echo(f"broker    {rt.settings.broker_shown}"
                   + ("  (checks run in-process)" if rt.settings.immediate else ""))
        typer.echo(f"jobs      {c.queued} queued, {c.running} running, {c.done} done ({c.ok} ok, {c.failed} failed)"
                   + (f", {c.cancelled} cancelled" if c.cancelled else ""))
        if c.unpublished:
            typer.echo(f"          {c.unpublished} queued jobs were never confirmed by the broker: run `runner requeue "
                       "--stale 0s`")
        if c.by_outcome:
            typer.echo("outcomes  " + ", ".join(f"{k} {v}" for k, v in sorted(c.by_outcome.items(),
                                                                              key=lambda kv: -kv[1])))
        typer.echo(f"rate      {c.done_last_minute} checks in the last minute")
        for crawl in crawls:  # a crawl's batch grows: how far it is
            typer.echo(f"crawl     batch {crawl.batch_id} ({printable(crawl.name)}): {crawl.done:,} checked, "
                       f"{crawl.pending:,} to go, {crawl.found:,} URLs found (at most {crawl.max_urls:,})"
                       + (f", {crawl.robots_skipped:,} left out by robots.txt" if crawl.robots_skipped else ""))
        from runner.jobs.regions import queue_for

        if st.broker_error:
            typer.echo(f"queue     unknown: {st.broker_error}")
        # One heartbeat per process: two `runner start --processes 2` are four of them.
        typer.echo(f"workers   {len(st.workers)} process{'es' if len(st.workers) != 1 else ''} alive")
        # One block per region: its workers and its queue (the default region's always).
        regions = sorted({*st.regions, *(w.region for w in st.workers)}, key=lambda r: (r != "default", r))
        for region in regions:
            mine = [w for w in st.workers if w.region == region]
            depth = st.regions.get(region)
            queue = printable(queue_for(rt.settings.queue, region))
            line = f"region    {printable(region)}: {len(mine)} process{'es' if len(mine) != 1 else ''} alive"
            if depth is not None:
                line += f"; queue {queue}: {depth.ready} ready, {depth.consumers} consumers, {depth.dead} dead-lettered"
                line += "  (`runner dead list`)" if depth.dead else ""
            typer.echo(line)
            for w in mine:
                pace = (f"concurrency {w.concurrency} (adaptive, up to {w.concurrency_max})" if w.concurrency_max
                        else f"concurrency {w.concurrency} (fixed)")
                typer.echo(f"          {printable(w.host)} pid {w.pid}: {pace}, {w.processed} checks, "
                           f"last seen {w.last_seen:%H:%M:%S}")


def doctor(ctx: typer.Context) -> None:
    """Check the settings, the database and the broker; say exactly what is wrong.

    Exit 0 when all is well; 2 when a setting needs fixing (a login or database the server
    refuses, a schema behind the code); 3 when a service is unreachable (try again later).
    """
    from db import StoreConfigError, StoreUnavailable, open_store
    from runner.taskq import open_broker

    settings: Settings = ctx.obj
    code = EXIT_OK

    def problem(text: str, exit_code: int) -> None:
        nonlocal code
        typer.echo(f"  FAILED: {text}")
        code = max(code, exit_code)

    typer.echo(f"database  {settings.database_shown}")
    try:
        store = open_store(settings.database_url, max_connections=1, migrate=False)
        try:
            version, latest = store.schema_version(), store.latest_version()
            if version == 0:
                # A new database: `runner start`, `submit` and `db upgrade` create the schema.
                typer.echo(f"  note: a new database (schema version 0, latest {latest}); the first "
                           "`runner start` or `runner submit` creates the schema (or `runner db upgrade`)")
            elif store.pending_versions():
                problem(f"schema version {version}, latest {latest}: run `runner db upgrade`", EXIT_USAGE)
            else:
                counts = store.counts()
                typer.echo(f"  ok: schema version {version}, {counts.total} jobs")
        finally:
            store.close()
    except StoreUnavailable as exc:
        if exc.refused:
            problem(f"the database refused the connection (fix the settings): {exc}", EXIT_USAGE)
        else:
            problem(f"unreachable: {exc}", EXIT_UNAVAILABLE)
    except (StoreConfigError, ConfigError) as exc:
        problem(str(exc), EXIT_USAGE)
    except StoreError as exc:
        problem(str(exc), EXIT_UNAVAILABLE)
    typer.echo(f"broker    {settings.broker_shown}")
    if settings.immediate:
        typer.echo("  ok: in-memory (checks run in the submitting process; `runner start` needs RabbitMQ)")
    else:
        try:
            depth = open_broker(settings.broker_url, settings.queue).ping()
            typer.echo(f"  ok: queue {settings.queue}: {depth.ready} ready, {depth.consumers} consumers, {depth.dead} "
                       "dead-lettered")
        except ConfigError as exc:  # the login refused: waiting would not fix it
            problem(str(exc), EXIT_USAGE)
        except BrokerError as exc:
            problem(str(exc), EXIT_UNAVAILABLE)
    raise typer.Exit(code)


@handled
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations (workers and submitters also do this on start), then give
    jobs recorded before URL histories their URL, state and rollups (in chunks; resumable:
    run it again after an interruption)."""
    from db import open_store
    from db.history import backfill

    store = open_store(ctx.obj.database_url, max_connections=1, migrate=False)
    try:
        applied = store.migrate()
        version = store.schema_version()
        typer.echo(f"applied migrations {', '.join(map(str, applied))}; schema version {version}" if applied
                   else f"schema is up to date (version {version})")
        n = backfill(store, on_chunk=lambda done, at, top: typer.echo(
            f"url history: {done:,} jobs (id {at:,} of {top:,})", err=True))
        if n:
            typer.echo(f"url history built for {n:,} earlier job{plural(n)}")
    finally:
        store.close()



@handled
def prune(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than",
                                            help="Delete done jobs submitted longer ago than this (30d, 12h, 2w).",
                                            show_default=False)],
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="Jobs deleted per transaction (short locks).")] = 5000,
    rollups_older_than: Annotated[str, typer.Option("--rollups-older-than",
                                                    help="Delete URLs' daily rollups (uptime and percentiles that "
                                                         "outlive results) older than this.")] = "365d",
) -> None:
    """Retention: delete done jobs and their results older than an age, a chunk at a time.

    Jobs still queued or running are never deleted. Batches left empty are removed too.
    Safe to run from cron while workers are busy.
    """
    from db import open_store

    age = parse_age(older_than)
    keep = parse_age(rollups_older_than)
    store = open_store(ctx.obj.database_url, max_connections=1)
    try:
        n = store.prune(age, chunk=chunk, rollups_older_than=keep)
    finally:
        store.close()
    typer.echo(f"pruned {n:,} done job{plural(n)} older than {older_than}")
