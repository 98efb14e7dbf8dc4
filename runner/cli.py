"""The ``runner`` command: one typer app. Each command is a few lines that call the library
and turn a known error into one clear line and an exit code.

Exit codes: 0 success; 1 some input rejected or some check failed; 2 usage or
configuration error; 3 database or broker unreachable.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from db import JobFilter, StoreConfigError, StoreError, StoreUnavailable

from .errors import BrokerError, ConfigError, InvalidInput, UnsentJobs
from .settings import Settings, from_env

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3

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


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"runner: {message}", err=True)
    return typer.Exit(code)


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Known errors become one line on stderr and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, StoreConfigError) as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except InvalidInput as exc:
            raise fail(str(exc), EXIT_USAGE) from None
        except StoreUnavailable as exc:
            if exc.refused:  # the server is up and said no: the settings need fixing
                raise fail(f"database refused the connection: {exc}", EXIT_USAGE) from None
            raise fail(f"database unreachable: {exc}", EXIT_UNAVAILABLE) from None
        except UnsentJobs as exc:
            raise fail(f"{exc}; {exc.recorded} job(s) recorded, those not confirmed are kept unsent: "
                       "`runner requeue --stale 0s` sends them once RabbitMQ is back", EXIT_UNAVAILABLE) from None
        except BrokerError as exc:
            raise fail(str(exc), EXIT_UNAVAILABLE) from None
        except StoreError as exc:
            raise fail(f"database error: {exc}", EXIT_UNAVAILABLE) from None

    return wrapper


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


@contextmanager
def runtime_for(ctx: typer.Context, **kwargs: Any) -> Iterator[Any]:
    from .service import Runtime

    rt = Runtime(ctx.obj, **kwargs)
    try:
        yield rt
    finally:
        rt.close()


# ---------------------------------------------------------------------------- check options

MethodOpt = Annotated[str | None, typer.Option("--method", help="GET or HEAD (default GET).", rich_help_panel="Check options")]
ExpectOpt = Annotated[str | None, typer.Option("--expect-status", help="Accepted status codes, e.g. 200-299,304 (default 200-399).", rich_help_panel="Check options")]
ContainsOpt = Annotated[str | None, typer.Option("--body-contains", help="The body must contain this text.", rich_help_panel="Check options")]
ExcludesOpt = Annotated[str | None, typer.Option("--body-excludes", help="The body must not contain this text.", rich_help_panel="Check options")]
MaxMsOpt = Annotated[float | None, typer.Option("--max-ms", help="Fail when the total time exceeds this many ms.", rich_help_panel="Check options")]
DeadlineOpt = Annotated[float | None, typer.Option("--deadline", help="Total seconds a check may take, retries included (default 30).", rich_help_panel="Check options")]
RedirectsOpt = Annotated[int | None, typer.Option("--max-redirects", help="Redirects to follow (default 10; 0 = don't follow).", rich_help_panel="Check options")]
InsecureOpt = Annotated[bool, typer.Option("--insecure", help="Don't verify TLS certificates.", rich_help_panel="Check options")]
MaxBytesOpt = Annotated[int | None, typer.Option("--max-bytes", help="Read at most this many body bytes (default 1 MiB).", rich_help_panel="Check options")]
HeaderOpt = Annotated[list[str] | None, typer.Option("--header", help="Extra request header 'Name: value' (repeatable).", rich_help_panel="Check options")]
RetriesOpt = Annotated[int | None, typer.Option("--retries", help="Attempts in total for transient failures (default 3).", rich_help_panel="Check options")]
ConditionOpt = Annotated[list[str] | None, typer.Option("--condition", help="Assertion such as 'total_ms < 500' (repeatable).", rich_help_panel="Check options")]


def check_options(method: str | None = None, expect_status: str | None = None, body_contains: str | None = None,
                  body_excludes: str | None = None, max_ms: float | None = None, deadline: float | None = None,
                  max_redirects: int | None = None, insecure: bool = False, max_bytes: int | None = None,
                  header: list[str] | None = None, condition: list[str] | None = None,
                  retries: int | None = None) -> Any:
    """The per-job options from CLI flags, validated now (never at check time)."""
    from .options import parse_options

    raw: dict[str, Any] = {
        "method": method, "expect_status": expect_status, "body_contains": body_contains,
        "body_excludes": body_excludes, "max_ms": max_ms, "deadline": deadline, "max_redirects": max_redirects,
        "insecure": insecure or None, "max_bytes": max_bytes, "header": header or None, "condition": condition or None,
        "retries": retries,
    }
    return parse_options({k: v for k, v in raw.items() if v is not None})


# ---------------------------------------------------------------------------- commands


@app.command()
@handled
def start(
    ctx: typer.Context,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, max=1024, help="Worker threads per process (checks wait on the network, so threads are cheap).")] = 128,
    processes: Annotated[int | None, typer.Option("--processes", "-p", min=1, max=256, help="Worker processes (default: number of cores).", show_default=False)] = None,
    prefetch: Annotated[int | None, typer.Option("--prefetch", min=1, max=65535, help="Unacked messages per process (default: concurrency).", show_default=False)] = None,
    shutdown_timeout: Annotated[float, typer.Option("--shutdown-timeout", min=0, help="Seconds in-flight checks get to finish on SIGTERM/SIGINT.")] = 30.0,
    hold_budget: Annotated[float, typer.Option("--hold-budget", min=1, help="Seconds a message may be held before its calls not yet started are handed on in a new message; keep it well under RabbitMQ's consumer_timeout (30 min by default).")] = 600.0,
    queue: Annotated[str | None, typer.Option("--queue", "-Q", help="Queue to consume (default: urltester).", show_default=False)] = None,
    deny_private: Annotated[bool, typer.Option("--deny-private", help="Also refuse loopback, RFC 1918, CGNAT and unique-local addresses.")] = False,
    allow_network: Annotated[list[str] | None, typer.Option("--allow-network", help="Network (CIDR) always allowed, overriding the address policy (repeatable).")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")] = "info",
) -> None:
    """Start a worker: a pool of threads (and processes) that check URLs from RabbitMQ.

    Waits for PostgreSQL and RabbitMQ if they are not up yet. Stops on SIGTERM or Ctrl-C, after the checks in flight (--shutdown-timeout).
    """
    from .consumer import PoolOptions, configure_logging, run_pool

    settings: Settings = ctx.obj.with_(queue=queue, deny_private=deny_private or None,
                                       allow_networks=tuple(allow_network) if allow_network else None)
    if settings.immediate:
        raise fail(
            "runner start needs RabbitMQ, but the broker is the in-memory default. Set "
            "URLTESTER_BROKER_URL=amqp://USER:PASSWORD@HOST:5672// (or --broker-url). Without a broker, "
            "`runner submit` checks URLs in-process.",
            EXIT_USAGE,
        )
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise fail(f"--log-level {log_level!r}: use debug, info, warning or error", EXIT_USAGE)
    configure_logging(log_level)
    options = PoolOptions(concurrency=concurrency, prefetch=prefetch, shutdown_timeout=shutdown_timeout,
                          hold_budget=hold_budget, **({"processes": processes} if processes else {}))
    _wait_for_services(settings)
    raise typer.Exit(run_pool(settings, options, log_level))


def _preflight(settings: Settings) -> None:
    """Open the database (applying migrations) and declare the queues: one clear error if not."""
    from db import open_store

    from .broker import open_broker

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

    from .backoff import backoff

    log = logging.getLogger("urltester.worker")

    def unreachable(exc: BaseException) -> bool:
        return isinstance(exc, BrokerError) or (isinstance(exc, StoreUnavailable) and not exc.refused)

    def waiting(state: Any) -> None:
        exc = state.outcome.exception()
        what = f"database unreachable: {exc}" if isinstance(exc, StoreUnavailable) else str(exc)
        log.warning("%s; waiting for it (next try in %.0f s)", what, state.next_action.sleep)

    Retrying(wait=backoff(0.5, 15), retry=retry_if_exception(unreachable), before_sleep=waiting,
             reraise=True)(_preflight, settings)


@app.command()
@handled
def submit(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="URLs to check (http or https; 'example.com' means https://example.com/).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the results and print them; exit 0 only if every check is ok.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", min=0, help="Give up waiting after this many seconds (exit 1).", show_default=False)] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Label for this batch (default: 'submit DATE TIME').", show_default=False)] = None,
    method: MethodOpt = None, expect_status: ExpectOpt = None, body_contains: ContainsOpt = None,
    body_excludes: ExcludesOpt = None, max_ms: MaxMsOpt = None, deadline: DeadlineOpt = None,
    max_redirects: RedirectsOpt = None, insecure: InsecureOpt = False, max_bytes: MaxBytesOpt = None,
    header: HeaderOpt = None, condition: ConditionOpt = None, retries: RetriesOpt = None,
) -> None:
    """Validate, record and enqueue URLs; print their job ids (one 'ID URL' per line)."""
    from .report import table_lines
    from .text import printable
    from .urls import mask_url

    options = check_options(method, expect_status, body_contains, body_excludes, max_ms, deadline,
                            max_redirects, insecure, max_bytes, header, condition, retries)
    with runtime_for(ctx) as rt:
        report = rt.submit(urls, options=options, batch=batch)
        for rejected in report.rejected:
            typer.echo(f"runner: rejected {printable(str(rejected))}", err=True)
        views = rt.store.list_jobs(JobFilter(ids=tuple(report.job_ids)), order="oldest", limit=len(report.job_ids)) if report.job_ids else []
        for view in views:
            typer.echo(f"{view.id}\t{printable(mask_url(view.url))}")
        code = EXIT_FAILED if report.rejected else EXIT_OK
        if not report.job_ids:
            raise typer.Exit(EXIT_FAILED if report.rejected else EXIT_OK)
        if wait or rt.settings.immediate:
            # On the embedded broker the checks run in this process: it must stay until they finish.
            done_views, complete = rt.wait(report.job_ids, timeout=wait_timeout)
            if wait:
                for line in table_lines(done_views):
                    typer.echo(line)
                if not complete:
                    typer.echo(f"runner: timed out after {wait_timeout:g} s waiting for results", err=True)
                if not complete or any(v.outcome != "ok" for v in done_views):
                    code = EXIT_FAILED
        raise typer.Exit(code)


def parse_since(text: str) -> datetime:
    """``30m``, ``2h``, ``7d`` (ago) or an ISO 8601 time."""
    age = parse_age(text, strict=False)
    if age is not None:
        return datetime.now(UTC) - age
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither an age like 30m, 2h, 7d nor an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_age(text: str, *, strict: bool = True) -> timedelta | None:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    if t[-1:] in units and t[:-1].replace(".", "", 1).isdigit():
        return timedelta(seconds=float(t[:-1]) * units[t[-1]])
    if t.isdigit():
        return timedelta(seconds=int(t))
    if strict:
        raise typer.BadParameter(f"{text!r} is not an age such as 90s, 30m, 2h, 7d or 2w")
    return None


@app.command()
@handled
def results(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option("--state", help="queued, running or done.")] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help="ok, http_error, dns_error, ...")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Batch name or id.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Submitted since: an age (30m, 2h, 7d) or an ISO time.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only checks that failed.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many jobs (default: 100 for table, all for json/csv).", show_default=False)] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json (one object per line), csv or junit (JUnit XML: one test case per URL, for CI).")] = "table",
) -> None:
    """List jobs and their results, newest first (what the old get_jobs returned).

    json, csv and junit stream every matching job (a million rows with flat memory).
    """
    from .report import FORMATS, table_lines, write_csv, write_json, write_junit

    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r}: use one of {', '.join(FORMATS)}", EXIT_USAGE)
    if state and state not in ("queued", "running", "done"):
        raise fail(f"--state {state!r}: use queued, running or done", EXIT_USAGE)
    flt = JobFilter(state=state, outcome=outcome, batch=batch, since=parse_since(since) if since else None, failed=failed)
    with runtime_for(ctx) as rt:
        if fmt == "table":
            views = rt.store.list_jobs(flt, limit=limit or 100)
            for line in table_lines(views):
                typer.echo(line)
            return
        if fmt == "junit":
            # The suite's counts lead the XML: count first (SQL), then stream the rows.
            from dataclasses import replace

            total = rt.store.count_jobs(flt)
            failures = rt.store.count_jobs(replace(flt, failed=True))
            skipped = 0 if state == "done" else sum(
                rt.store.count_jobs(replace(flt, state=s)) for s in ("queued", "running") if state in (None, s))
            if limit is not None:
                total = min(total, limit)
            rows = rt.store.iter_jobs(flt, order="oldest", limit=limit)
            write_junit(rows, sys.stdout, name=f"urltester {batch}" if batch else "urltester",
                        tests=total, failures=min(failures, total), skipped=min(skipped, total))
            return
        rows = rt.store.iter_jobs(flt, order="newest", detail=(fmt == "json"), limit=limit)
        (write_json if fmt == "json" else write_csv)(rows, sys.stdout)


@app.command()
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
            typer.echo(f"          {w.host} pid {w.pid}: {w.concurrency} threads, {w.processed} checks, last seen {w.last_seen:%H:%M:%S}")


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check the settings, the database and the broker; say exactly what is wrong."""
    from db import open_store

    from .broker import open_broker

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


@app.command()
@handled
def requeue(
    ctx: typer.Context,
    stale: Annotated[str, typer.Option("--stale", help="Re-publish jobs not done whose message is older than this age (90s, 30m, 2h).")],
) -> None:
    """Re-publish jobs whose message was lost (a purged queue, a failed publish)."""
    age = parse_age(stale)
    with runtime_for(ctx) as rt:
        n = rt.requeue_stale(age)
        typer.echo(f"re-published {n} job{'s' if n != 1 else ''}")


@db_app.command("upgrade")
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


def main() -> None:
    app(prog_name="runner")


# Commands kept in modules of their own register themselves on `app` when imported.
from . import cli_import, cli_tui  # noqa: E402,F401
