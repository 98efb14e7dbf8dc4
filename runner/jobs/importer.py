"""Batch imports: a file of URLs (text, CSV or JSON Lines) validated, recorded and queued.

A file of any size with flat memory: :mod:`runner.jobs.readers` yields its records (every
bad line named ``FILE:LINE: reason``), the :class:`~runner.jobs.intake.Validator` makes jobs
of them, and the runtime's :class:`~runner.jobs.intake.Intake` records and publishes them
(a :class:`~runner.jobs.intake.Feed` for the batch), the same way in as ``runner submit``. With ``strict`` the jobs are
first spooled to a temporary file and queued only when no line was refused.

Documents (a sitemap, HTML, Markdown) and SOURCEs given as a URL are read by
:class:`runner.jobs.documents.Reading` into the same records, each named by its place.

Failure semantics (what exit code 3 means) are the intake's; on top of them, re-running
an import with the same ``--idempotency-key`` records only what an earlier run did not
(a batch's ``size`` counts exactly the jobs recorded, and a file's valid jobs come in file
order) and publishes what that run recorded but could not publish.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from db import Batch, NewJob, StoreError
from runner.check.options import CheckOptions
from runner.discover.links import SKIPPED_KINDS
from runner.discover.sitemap import valid_lastmod
from runner.errors import BrokerError, InvalidInput
from runner.jobs.documents import Reading, Remote, UrlSource, format_of, label_of
from runner.jobs.intake import PUBLISHERS, Feed, Validator, chunks
from runner.jobs.readers import DOCUMENT_FORMATS, ImportUsageError, Record, Refusal, Source, records
from runner.jobs.urls import Rejected

KEPT = "lastmod"  # a sitemap's <lastmod>: kept in the job's options, ignored by the check


def with_kept(options: str, lastmod: str) -> str:
    """A job's options JSON with the ``lastmod`` that rides along."""
    value = json.loads(options)
    value[KEPT] = lastmod
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class ImportReport:
    """What an import did, for the summary line and the exit code (the intake's counts and more)."""

    source: str
    format: str = "text"
    lines: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    already: int = 0        # valid jobs an earlier run with the same idempotency key recorded
    recorded: int = 0
    published: int = 0
    unpublished: int = 0    # recorded, publish failed: marked for `runner requeue`
    republished: int = 0    # an earlier run's unpublished jobs published now
    batch: Batch | None = None
    broker_error: str | None = None
    store_error: str | None = None
    refused: bool = False   # strict mode and some line was invalid: nothing queued
    unit: str = "lines"     # what ``lines`` counts: lines, or a document's links or entries
    skipped: dict[str, int] = field(default_factory=dict)  # links skipped, by kind (mailto ...)
    sitemaps: int = 0       # sitemap files read (an index and the sitemaps it names)
    warnings: int = 0       # imported with a remark (a bad <lastmod>)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        return self.recorded / self.elapsed if self.elapsed > 0 else 0.0


class Importer:
    """One import: validate the source's records, then record and queue the valid ones.

    ``on_reject`` receives each refusal as it is found (``FILE:LINE: reason: 'text'``);
    ``on_progress`` is called now and then with the report (from any thread).
    """

    def __init__(self, runtime: Any, *, defaults: CheckOptions | None = None, fmt: str | None = None,
                 strict: bool = False, keep_duplicates: bool = False, batch_name: str | None = None,
                 idempotency_key: str | None = None, publishers: int = PUBLISHERS,
                 on_reject: Callable[[Rejected], None] | None = None,
                 on_progress: Callable[[ImportReport], None] | None = None,
                 regions: Any = None, quorum: Any = None, base_url: str | None = None) -> None:
        """``regions``/``quorum``: the file-wide defaults (a line's own keys override them).
        ``base_url``: what a document's relative links are resolved against."""
        self.rt = runtime
        self.defaults = defaults or CheckOptions()
        self.base_url = base_url
        self._remote: Remote | None = None
        self.validator = Validator(defaults or CheckOptions(), keep_duplicates=keep_duplicates,
                                   placement=runtime.placement(regions, quorum), place=runtime.placement)
        self.fmt = fmt
        self.strict = strict
        self.batch_name = batch_name
        self.idempotency_key = idempotency_key
        self.publishers = publishers
        self.on_reject = on_reject or (lambda rejected: None)
        self._on_progress = on_progress
        self._last_progress = 0.0

    def run(self, source: Source | UrlSource) -> ImportReport:
        """Import ``source``. Raises ImportUsageError (file-level problem, nothing queued)
        or a StoreError (database gone; the report is attached as ``exc.report``)."""
        report = ImportReport(source.name)
        self.rt.broker.ping()  # RabbitMQ down: exit 3 before anything is recorded
        try:
            return self._run(source, report)
        finally:
            if self._remote is not None:
                self._remote.close()

    def _run(self, source: Source | UrlSource, report: ImportReport) -> ImportReport:
        fmt = self.fmt or format_of(source.name)
        if fmt in DOCUMENT_FORMATS or isinstance(source, UrlSource):
            reading = Reading(source, fmt, remote=self.remote, base_url=self.base_url)
            report.format, report.unit, items = reading.format or "text", reading.unit, reading.records()
            counted: Any = reading
        else:
            report.format, items = records(source, self.fmt)
            counted = source
        jobs = self._validated(counted, items, report)
        try:
            if self.strict:
                with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
                    for url, opts in jobs:
                        spool.write(f"{url}\t{opts}\n")
                    if report.rejected:
                        report.refused = True
                    else:
                        spool.seek(0)
                        self._queue(source, (NewJob(*line.rstrip("\n").split("\t", 1)) for line in spool), report)
            else:
                self._queue(source, jobs, report)
        except (StoreError, BrokerError) as exc:
            exc.report = report  # type: ignore[union-attr]  # rides with the error to the CLI's summary
            raise
        finally:
            report.finished = time.monotonic()
            if isinstance(counted, Reading):
                report.skipped = {k: counted.skipped[k] for k in SKIPPED_KINDS if counted.skipped[k]}
                report.sitemaps = counted.sitemaps
                counted.close()
        return report

    def remote(self) -> Remote:
        """What fetches this import's documents (built on first use, closed by ``run``)."""
        if self._remote is None:
            self._remote = Remote(self.rt, self.defaults)
        return self._remote

    def _validated(self, source: Any, items: Iterator[Record | Refusal], report: ImportReport) -> Iterator[NewJob]:
        name = source.name
        validator = self.validator
        for item in items:
            number = item[0]
            where = number if isinstance(number, str) else f"{name}:{number}"  # a document's place, or a line
            if isinstance(item[2], str):  # a refusal from the parser
                self._reject(Rejected(item[2], item[1], where), report)
                continue
            raw = item[2]
            kept = None
            if raw and KEPT in raw:  # rides with the job, not a check option
                raw = dict(raw)
                kept = raw.pop(KEPT)
            try:
                job = validator.job(item[1], raw or None)
            except InvalidInput as exc:
                self._reject(Rejected(item[1], str(exc), where), report)
                continue
            if job is not None and kept is not None:
                if isinstance(kept, str) and valid_lastmod(kept):
                    job = NewJob(job.url, with_kept(job.options_json(), kept.strip()))
                else:
                    report.warnings += 1
                    self.on_reject(Rejected(str(kept)[:100], "lastmod is not a W3C date such as 2026-11-27 "
                                            "(the URL is imported without it)", where))
            if job is None:
                report.duplicates += 1
                continue
            report.valid += 1
            yield job
            if report.valid % 512 == 0:
                report.lines = source.line_count
                self._progress(report)
        report.lines = source.line_count

    def _reject(self, rejected: Rejected, report: ImportReport) -> None:
        report.rejected += 1
        self.on_reject(rejected)

    def _queue(self, source: Source | UrlSource, jobs: Iterable[NewJob], report: ImportReport) -> None:
        feed: Feed | None = None
        skip = 0

        def fresh() -> Iterator[NewJob]:
            nonlocal feed, skip
            for job in jobs:
                if feed is None:
                    feed, skip = self._start(source, report)
                if skip:
                    skip -= 1
                    report.already += 1
                    continue
                yield job

        try:
            for chunk in chunks(fresh()):
                assert feed is not None
                feed.put(chunk)
                self._progress(report)
        finally:
            if feed is not None:
                feed.close()
            self._progress(report, force=True)

    def _start(self, source: Source | UrlSource, report: ImportReport) -> tuple[Feed, int]:
        """Create (or find, by idempotency key) the batch and start its feed; an earlier run
        of this import left jobs unpublished: publish them now."""
        from runner.jobs.runtime import default_batch_name

        name = self.batch_name or default_batch_name(label_of(source.name))
        report.batch = batch = self.rt.store.create_batch(name, self.idempotency_key)
        intake = self.rt.intake
        if batch.existed:
            report.republished += intake.republish(batch_id=batch.id)
        return intake.feed(batch.id, report, publishers=self.publishers), batch.size if batch.existed else 0

    def _progress(self, report: ImportReport, *, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= 0.1:
            self._last_progress = now
            self._on_progress(report)


__all__ = ["ImportReport", "ImportUsageError", "Importer", "Source"]
