"""``runner import`` and ``runner prune``: batch imports for cron, and retention.

The commands only read flags, call :mod:`runner.jobs.importer` (or the store) and turn what
happened into lines and an exit code; docs/import.md tells operators the same story.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any, TextIO

import typer

from runner.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    FailOn,
    FailOnOpt,
    ImportFormat,
    NoWorkerAfterOpt,
    QuorumOpt,
    RegionsOpt,
    fail,
    handled,
    new_failures,
    plural,
    runtime_for,
    tell_alerts,
    value,
    with_check_options,
)
from runner.text import printable

IMPORT_HELP = """Validate a file of URLs, or the links of a document, and queue each valid one as a job of one batch.

SOURCE is a path, - for standard input, or an http(s) URL (fetched through the check's transport: the address policy,
--deny-private, the check options' headers and the per-host limits apply). Formats: text (one URL per line; # comments
and blank lines ignored), CSV (a header with a url column and optional option columns: method, expect_status,
body_contains, body_excludes, max_ms, deadline, max_redirects, insecure, max_bytes, header, condition, retries) or JSON
Lines (one object per line with a "url" key and the same option keys). The columns/keys regions and quorum say where
each line is checked (like --regions, --quorum). Documents: sitemap (a sitemap or sitemap index, .xml or .xml.gz; the
sitemaps it names are fetched, 3 levels at most; 50,000 URLs and 50 MB per file; <lastmod> kept with the job), html (a
href, img src/srcset, link href, script src, iframe src, source src/srcset; <base href> honoured) and markdown (links,
images, reference links, autolinks, raw URLs). mailto:, tel:, javascript:, data: and #fragment links are skipped and
counted; relative links are resolved against the document's URL or --base-url. The format comes from the extension (.txt
.csv .jsonl .xml .xml.gz .html .htm .md), else for a URL from its Content-Type, else from the content; --format
overrides. The check option flags are defaults for the whole file; a line's own columns or keys override them.

Each invalid line or link is reported on stderr as FILE:LINE: reason (a sitemap's entry as SITEMAP:LINE (entry N):
reason), and the valid ones are queued (with --strict nothing is queued if any line is invalid). Duplicate lines (same
URL and options) are queued once. With --idempotency-key a re-run (a cron retry) never queues a line twice: it records
only what an earlier run did not, and publishes what that run recorded but could not publish.

Exit codes: 0 every valid line queued (with --wait: and every check ok).

1 some lines rejected and the rest queued; or --strict refused the file; or with --wait a check failed or the wait timed
out.

2 usage error: bad flag, unreadable file or URL, a SOURCE that is not a sitemap, CSV header without url or with an
unknown column (nothing queued).

3 database or RabbitMQ unreachable. Nothing is half-queued: if RabbitMQ fails mid-import, every job is still recorded
and the ones not published are marked; `runner requeue --stale 0s` (or the same import re-run with its
--idempotency-key) publishes them. If the database fails, what was recorded stays; re-run with the same
--idempotency-key to record the rest.
"""


class Progress:
    """The import's progress on a terminal's stderr: one line, redrawn in place by
    ``rich.progress`` (at most 10 times a second), cleared when the import ends.

    Sized for 80 columns: a bar of 15 cells and short figures, so the line neither wraps nor
    leaves copies of itself behind. Rejected lines are printed above it as they come. When
    stderr is not a terminal (cron, a pipe, a log file), or with ``--quiet``, it draws
    nothing: a log gets the rejected lines and the summary, no redraws.
    """

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.source: Any = None
        self._bar: Any = None
        self._task: Any = None

    def _start(self, report: Any) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        console = Console(file=self.stream, highlight=False, markup=False, emoji=False)
        self._bar = RichProgress(
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=15),
            TaskProgressColumn(),
            TextColumn("{task.fields[figures]}", markup=False),
            TimeElapsedColumn(),
            console=console, transient=True, refresh_per_second=10, redirect_stdout=False, redirect_stderr=False,
        )
        size = self.source.size if self.source is not None else None
        name = printable(os.path.basename(report.source) or report.source, 14)
        self._task = self._bar.add_task(name, total=size or None, figures="")
        self._bar.start()

    def update(self, report: Any) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            self._start(report)
        read = self.source.read if self.source is not None else 0
        figures = f"{_short(report.lines)} {report.unit} {_short(report.rejected)} bad {_short(report.rate)}/s"
        self._bar.update(self._task, completed=read, figures=figures)

    def clear(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def message(self, text: str) -> None:
        """A line that stays (a rejected line): above the progress line while it is shown."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, emoji=False, soft_wrap=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


def _short(n: float) -> str:
    """4,321 -> 4.3k, 1,234,567 -> 1.2M: figures that fit the 80-column line."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:.0f}"


def rejected_line(rejected: Any) -> str:
    """``FILE:LINE: reason`` (with the offending text when there is some), safe to print."""
    if rejected.text:
        return printable(str(rejected))
    return printable(f"{rejected.where}: {rejected.reason}")


@handled
@with_check_options
def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="SOURCE",
                                        help="File of URLs (text, CSV or JSON Lines), a sitemap, HTML or Markdown "
                                             "document, an http(s) URL of one, or - for stdin.", show_default=False)],
    fmt: Annotated[ImportFormat | None, typer.Option("--format", "-f",
                                                     help="Format (default: from the extension, else a URL's "
                                                          "Content-Type, else the content).",
                                                     show_default=False)] = None,
    base_url: Annotated[str | None, typer.Option("--base-url",
                                                 help="Resolve a document's relative links against this URL (default: "
                                                      "the document's own URL).", show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Queue nothing if any line is invalid.")] = False,
    keep_duplicates: Annotated[bool, typer.Option("--keep-duplicates", help="Queue repeated lines each time.")] = False,
    batch: Annotated[str | None, typer.Option("--batch", help="Label for the batch (default: 'FILE DATE TIME').",
                                              show_default=False)] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key",
                                                        help="Re-running with the same key never queues a line twice "
                                                             "(safe cron retries).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print nothing on success (rejected lines and errors are still reported).")] = False,
    wait: Annotated[bool, typer.Option("--wait",
                                       help="Wait for the checks; print ok, failed by outcome and the slowest; exit 1 "
                                            "if any failed.")] = False,
    wait_timeout: Annotated[float | None, typer.Option("--wait-timeout", min=0,
                                                       help="Give up waiting after this many seconds (exit 1).",
                                                       show_default=False)] = None,
    fail_on: FailOnOpt = FailOn.any,
    options: Any = None,  # the check options' flags (with_check_options): defaults for every line
    regions: RegionsOpt = None, quorum: QuorumOpt = None, no_worker_after: NoWorkerAfterOpt = None,
) -> None:
    from db import StoreError
    from runner.errors import BrokerError
    from runner.jobs.documents import open_input
    from runner.jobs.importer import Importer
    from runner.jobs.readers import ImportUsageError

    if base_url is not None and not _absolute(base_url):
        raise fail(f"--base-url {printable(base_url)!r}: give an absolute http(s) URL, e.g. https://example.com/docs/",
                   EXIT_USAGE)
    progress = Progress(sys.stderr, enabled=not quiet and sys.stderr.isatty())
    try:
        source = open_input(file)
    except ImportUsageError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    progress.source = source
    ctx.obj = ctx.obj.with_(no_worker_after=no_worker_after)
    try:
        with runtime_for(ctx) as rt:
            importer = Importer(
                rt, defaults=options, fmt=value(fmt), strict=strict, keep_duplicates=keep_duplicates,
                regions=regions, quorum=quorum, base_url=base_url,
                batch_name=batch, idempotency_key=idempotency_key,
                on_reject=lambda r: progress.message(rejected_line(r)), on_progress=progress.update,
            )
            try:
                report = importer.run(source)
            except ImportUsageError as exc:
                progress.clear()
                raise fail(str(exc), EXIT_USAGE) from None
            except StoreError as exc:
                progress.clear()
                raise fail(_store_failed(exc, idempotency_key), EXIT_UNAVAILABLE) from None
            except BrokerError:
                progress.clear()
                raise
            except KeyboardInterrupt:
                progress.clear()
                raise fail("interrupted: the jobs recorded so far stay queued"
                           + ("; re-run with the same --idempotency-key to record the rest" if idempotency_key else ""),
                           130) from None
            progress.clear()
            code = EXIT_FAILED if report.rejected else EXIT_OK
            if report.refused:
                typer.echo(f"runner: --strict: {report.rejected} line{plural(report.rejected)} rejected; "
                           f"nothing queued from {printable(report.source)}", err=True)
                raise typer.Exit(EXIT_FAILED)
            if report.broker_error:
                typer.echo(summary_line(report), err=True)
                raise fail(
                    f"RabbitMQ failed during the import: {report.broker_error}. {report.unpublished} "
                    f"job{plural(report.unpublished)} are recorded but not published; they are marked, and "
                    "`runner requeue --stale 0s` publishes them once RabbitMQ is back"
                    + (" (so does re-running this import with the same --idempotency-key)" if idempotency_key else ""),
                    EXIT_UNAVAILABLE,
                )
            if not quiet or code != EXIT_OK:
                typer.echo(summary_line(report))
            if report.batch is not None and wait:
                summary, complete = rt.wait(report.batch.id, timeout=wait_timeout, slowest=5)
                if not quiet or summary.failed or not complete:
                    for line in summary_lines(summary):
                        typer.echo(line)
                if not complete:
                    typer.echo(f"runner: timed out after {wait_timeout:g} s: {summary.pending} checks "
                               "not done yet", err=True)
                if not complete or (summary.failed and (fail_on == FailOn.any
                                                        or new_failures(rt.store, report.batch.id))):
                    code = EXIT_FAILED
            else:
                # The in-memory broker (the embedded default) runs the checks in this process:
                # it must stay until they finish. RabbitMQ already holds every message: at once.
                rt.broker.flush()
            tell_alerts(rt, "import")
            raise typer.Exit(code)
    finally:
        source.close()


def _absolute(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _store_failed(exc: Any, key: str | None) -> str:
    report = getattr(exc, "report", None)
    text = f"database unreachable during the import: {exc}"
    if report is None or report.batch is None:
        return text
    text += (f". {report.recorded} job{plural(report.recorded)} of batch {report.batch.name!r} "
             f"(id {report.batch.id}) were recorded before it")
    if key:
        return text + "; re-run with the same --idempotency-key to record the rest"
    return text + ("; re-running without an --idempotency-key records every line again "
                   f"(see `runner results --batch {report.batch.id}`)")


def summary_line(report: Any) -> str:
    """The one line a cron log keeps: what was read, queued, refused, how fast."""
    batch = f" in batch {printable(report.batch.name)!r} (id {report.batch.id})" if report.batch else ""
    unit = report.unit if report.lines != 1 else {"entries": "entry"}.get(report.unit, report.unit.rstrip("s"))
    parts = [f"{report.lines:,} {unit}", f"{report.published:,} jobs queued{batch}"]
    if report.sitemaps:
        parts.insert(0, f"{report.sitemaps:,} sitemap{plural(report.sitemaps)}")
    if report.already:
        parts.append(f"{report.already:,} already recorded by an earlier run with this key")
    if report.republished:
        parts.append(f"{report.republished:,} re-published")
    if report.unpublished:
        parts.append(f"{report.unpublished:,} recorded but not published")
    parts.append(f"{report.rejected:,} rejected")
    parts.append(f"{report.duplicates:,} duplicate{plural(report.duplicates)}")
    skipped = sum(report.skipped.values())
    if skipped:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in report.skipped.items())
        parts.append(f"{skipped:,} skipped ({kinds})")
    if report.warnings:
        parts.append(f"{report.warnings:,} with a remark")
    return (f"imported {printable(report.source)} ({report.format}): " + ", ".join(parts)
            + f"; {report.elapsed:.1f} s, {report.rate:,.0f} jobs/s")


def summary_lines(summary: Any) -> list[str]:
    from runner.text import mask_url

    by_outcome = ", ".join(f"{k} {v:,}" for k, v in sorted(summary.by_outcome.items(),
                                                           key=lambda kv: -kv[1]) if k != "ok")
    lines = [f"checked {summary.done:,} of {summary.total:,}: ok {summary.ok:,}, failed {summary.failed:,}"
             + (f" ({by_outcome})" if by_outcome else "")
             + (f"; {summary.cancelled:,} cancelled" if summary.cancelled else "")]
    for i, slow in enumerate(summary.slowest):
        label = "slowest" if i == 0 else ""
        lines.append(f"{label:<8} {slow.total_ms:9.0f} ms  {slow.outcome:<18} {printable(mask_url(slow.url), 100)}")
    return lines
