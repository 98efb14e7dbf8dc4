"""``runner status``, ``doctor``, ``db upgrade`` and ``prune``: looking after a deployment."""

from __future__ import annotations

from typing import Annotated

import typer

from db import StoreError
from runner.cli.common import EXIT_OK, EXIT_UNAVAILABLE, handled, parse_age, plural, runtime_for
from runner.errors import BrokerError, ConfigError
from runner.jobs.settings import Settings


@handled
def status(ctx: typer.Context) -> None:
    """Queue depth, jobs by state, workers alive and throughput."""
    with runtime_for(ctx) as rt:
        st = rt.status()
        c = st.counts
        typer.echo(f"database  {rt.settings.database_shown}")
        typer.echo(f"broker    {rt.settings.broker_shown}" + ("  (checks run in-process)" if rt.settings.immediate else ""))
        typer.echo(f"jobs      {c.queued} queued, {c.running} running, {c.done} done ({c.ok} ok, {c.failed} failed)")
        if c.unpublished:
            typer.echo(f"          {c.unpublished} queued jobs were never confirmed by the broker: run `runner requeue --stale 0s`")
        if c.by_outcome:
            typer.echo("outcomes  " + ", ".join(f"{k} {v}" for k, v in sorted(c.by_outcome.items(), key=lambda kv: -kv[1])))
        typer.echo(f"rate      {c.done_last_minute} checks in the last minute")
        if st.queue is not None:
            typer.echo(f"queue     {rt.settings.queue}: {st.queue.ready} ready, {st.queue.consumers} consumers, {st.queue.dead} dead-lettered")
        elif st.broker_error:
            typer.echo(f"queue     unknown: {st.broker_error}")
        typer.echo(f"workers   {len(st.workers)} alive")
        for w in st.workers:
            pace = (f"concurrency {w.concurrency} (adaptive, up to {w.concurrency_max})" if w.concurrency_max
                    else f"concurrency {w.concurrency} (fixed)")
            typer.echo(f"          {w.host} pid {w.pid}: {pace}, {w.processed} checks, last seen {w.last_seen:%H:%M:%S}")


def doctor(ctx: typer.Context) -> None:
    """Check the settings, the database and the broker; say exactly what is wrong."""
    from db import open_store
    from runner.taskq.broker import open_broker

    settings: Settings = ctx.obj
    problems = 0
    typer.echo(f"database  {settings.database_shown}")
    try:
        store = open_store(settings.database_url, max_connections=1, migrate=False)
        try:
            version, latest = store.schema_version(), store.latest_version()
            if version < latest:
                typer.echo(f"  schema version {version}, latest {latest}: run `runner db upgrade`")
                problems += 1
            else:
                counts = store.counts()
                typer.echo(f"  ok: schema version {version}, {counts.queued + counts.running + counts.done} jobs")
        finally:
            store.close()
    except (StoreError, ConfigError) as exc:
        typer.echo(f"  FAILED: {exc}")
        problems += 1
    typer.echo(f"broker    {settings.broker_shown}")
    if settings.immediate:
        typer.echo("  ok: in-memory (checks run in the submitting process; `runner start` needs RabbitMQ)")
    else:
        try:
            depth = open_broker(settings.broker_url, settings.queue).ping()
            typer.echo(f"  ok: queue {settings.queue}: {depth.ready} ready, {depth.consumers} consumers, {depth.dead} dead-lettered")
        except (BrokerError, ConfigError) as exc:
            typer.echo(f"  FAILED: {exc}")
            problems += 1
    raise typer.Exit(EXIT_UNAVAILABLE if problems else EXIT_OK)



@handled
def db_upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations (workers and submitters also do this on start)."""
    from db import open_store

    store = open_store(ctx.obj.database_url, max_connections=1, migrate=False)
    try:
        applied = store.migrate()
        version = store.schema_version()
    finally:
        store.close()
    typer.echo(f"applied migrations {', '.join(map(str, applied))}; schema version {version}" if applied
               else f"schema is up to date (version {version})")



@handled
def prune(
    ctx: typer.Context,
    older_than: Annotated[str, typer.Option("--older-than", help="Delete done jobs submitted longer ago than this (30d, 12h, 2w).", show_default=False)],
    chunk: Annotated[int, typer.Option("--chunk", min=1, help="Jobs deleted per transaction (short locks).")] = 5000,
) -> None:
    """Retention: delete done jobs and their results older than an age, a chunk at a time.

    Jobs still queued or running are never deleted. Batches left empty are removed too.
    Safe to run from cron while workers are busy.
    """
    from db import open_store

    age = parse_age(older_than)
    store = open_store(ctx.obj.database_url, max_connections=1)
    try:
        n = store.prune(age, chunk=chunk)
    finally:
        store.close()
    typer.echo(f"pruned {n:,} done job{plural(n)} older than {older_than}")
