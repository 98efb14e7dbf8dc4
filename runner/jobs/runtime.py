"""The runtime the CLI, the TUI and workers share: settings, store, broker, app, tasks and
intake, wired once.

Jobs enter one way, :attr:`Runtime.intake` (:mod:`runner.jobs.intake`), which
:meth:`Runtime.submit` (the CLI's submit, the TUI's input and re-test, the API) and
:class:`~runner.jobs.importer.Importer` both drive: validate everything first, record the
jobs (the database is the source of truth), then publish one call per job with publisher
confirms. If the broker cannot confirm, the jobs stay recorded and marked, and
``runner requeue --stale`` (or the TUI, once the broker is back) publishes them later
(:meth:`~runner.jobs.intake.Intake.republish`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from db import Batch, Counts, JobFilter, NewJob, ResultRecord, Store, WorkerBeat, open_store, utcnow
from db.batches import batch_summary
from db.regional import region_results
from runner.check.options import CheckOptions, parse_options
from runner.errors import BrokerError, InvalidInput
from runner.jobs.intake import Intake, Validator
from runner.jobs.regions import (
    DEFAULT_REGION,
    parse_placement,
    queue_for,
    report_no_worker,
    resolve,
    split_placement,
)
from runner.jobs.settings import Settings
from runner.jobs.tasks import register
from runner.jobs.urls import Rejected
from runner.jobs.writer import ResultWriter
from runner.taskq import open_broker
from runner.taskq.app import App, Broker, QueueDepth

if TYPE_CHECKING:
    from runner.check.checker import Checker
    from runner.jobs.crawl import Crawler
    from runner.jobs.pacing import Pacer

@dataclass
class SubmitReport:
    """What a submit did: the batch, the jobs recorded, the inputs refused."""

    batch: Batch | None
    job_ids: list[int] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # each job's normalised URL, as job_ids
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0


@dataclass
class Status:
    counts: Any
    workers: list[Any]
    queue: QueueDepth | None
    broker_error: str | None = None
    regions: dict[str, QueueDepth | None] = field(default_factory=dict)  # region -> its queue's depth


class Runtime:
    """Everything a process of urltester needs, built from settings at the entry point."""

    def __init__(self, settings: Settings, *, store: Store | None = None, broker: Broker | None = None,
                 db_connections: int = 8) -> None:
        """``store`` and ``broker`` default to those the settings name; a unit test may hand in
        an in-memory broker of its own (``MemoryBroker(inline=True)``: each check runs on the
        submitting thread before ``submit`` returns)."""
        self.settings = settings
        self.store = store or open_store(settings.database_url, max_connections=db_connections)
        # A worker consumes its region's queue; a submitter publishes to each job's regions.
        self.broker: Broker = broker or open_broker(
            settings.broker_url, queue_for(settings.queue, settings.region), publish_timeout=settings.publish_timeout)
        self.app = App(self.broker)
        self.check_task = register(self.app, self)
        # A broker that can hold calls back (RabbitMQ's delay queues) keeps a rate-limited
        # host's backlog there, out of the work queue, until about each call's slot.
        pace = (lambda urls: self.pacer.ahead(urls)) if getattr(self.broker, "delays", False) else None
        self.intake = Intake(self.store, self.app, queue=settings.queue, no_worker_after=settings.no_worker_after,
                             pace=pace)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._checker: Checker | None = None
        self._writer: ResultWriter | None = None
        self._pacer: Pacer | None = None
        self._crawler: Crawler | None = None
        self._lock = threading.Lock()
        self._sweep_after = 0  # where the next no-worker sweep goes on (see report_no_worker)

    # Built on first use: a submitter that only enqueues never needs them.
    @property
    def checker(self) -> Checker:
        if self._checker is not None:
            return self._checker  # every check asks: no lock once it is built
        pacer = self.pacer  # before the lock: it takes the same one
        with self._lock:
            if self._checker is None:
                from runner.check.checker import Checker
                from runner.check.policy import AddressPolicy

                policy = AddressPolicy(deny_private=self.settings.deny_private, allow=self.settings.allow_networks)
                self._checker = Checker(policy, on_retry_after=pacer.pause, before_retry=pacer.again)
            return self._checker

    @property
    def writer(self) -> ResultWriter:
        if self._writer is not None:
            return self._writer
        with self._lock:
            if self._writer is None:
                self._writer = ResultWriter(self.store)
            return self._writer

    @property
    def pacer(self) -> Pacer:
        """This process's side of the fleet-wide host limits (runner/jobs/pacing.py)."""
        if self._pacer is not None:
            return self._pacer
        with self._lock:
            if self._pacer is None:
                from runner.jobs.pacing import Limits, Pacer

                defaults = Limits(self.settings.host_rate, self.settings.host_connections)
                self._pacer = Pacer(self.store.limits, self.worker_id, defaults)
            return self._pacer

    @property
    def crawler(self) -> Crawler:
        """A worker's side of the crawls (runner/jobs/crawl.py), built for its first crawl page."""
        if self._crawler is not None:
            return self._crawler
        with self._lock:
            if self._crawler is None:
                from runner.jobs.crawl import Crawler

                self._crawler = Crawler(self)
            return self._crawler

    def referrers(self, job_ids: Sequence[int]) -> dict[int, list[dict[str, str]]]:
        """Each crawl job's referrers: the pages that link to it, with the link's text."""
        from db.crawls import referrers_of

        return referrers_of(self.store, job_ids)

    def close(self) -> None:
        self.app.close()
        if self._pacer is not None:
            self._pacer.close()
        if self._writer is not None:
            self._writer.close()
        if self._checker is not None:
            self._checker.close()
        self.store.close()

    # ------------------------------------------------------------------ submitting

    def submit(self, urls: Sequence[str], *, options: CheckOptions | dict[str, Any] | None = None,
               batch: str | None = None, idempotency_key: str | None = None, strict: bool = False,
               keep_duplicates: bool = True, regions: str | Sequence[str] | None = None,
               quorum: str | int | None = None) -> SubmitReport:
        """Validate, record and enqueue URLs. Invalid ones are reported, never half-recorded.

        ``regions`` (names, ``a,b`` or ``all``) and ``quorum`` (any, all, majority, N) say
        where each job is checked and when it is ok; a dict of ``options`` may carry them
        as ``regions``/``quorum`` keys instead (the API's body). With ``strict`` nothing is
        recorded when any input is invalid. Raises UnsentJobs if the broker did not
        confirm (the jobs are recorded and marked for requeue).
        """
        if isinstance(options, dict):
            options, raw_regions, raw_quorum = split_placement(options)
            regions = raw_regions if regions is None else regions
            quorum = raw_quorum if quorum is None else quorum
            options = parse_options(options)
        validator = Validator(options or CheckOptions(), keep_duplicates=keep_duplicates,
                              placement=self.placement(regions, quorum))
        report = SubmitReport(None)
        jobs: list[NewJob] = []
        for text in urls:
            try:
                job = validator.job(text, None)
            except InvalidInput as exc:
                report.rejected.append(Rejected(text, exc.message))
                continue
            if job is None:
                report.duplicates += 1
            else:
                jobs.append(job)
        if not jobs or (strict and report.rejected):
            return report
        report.batch = self.store.create_batch(batch or default_batch_name("submit"), idempotency_key)
        if report.batch.existed:
            return report
        report.urls = [job.url for job in jobs]
        report.job_ids = self.intake.enqueue(report.batch.id, jobs)
        return report

    def placement(self, regions: Any, quorum: Any, where: str | None = None) -> dict[str, Any]:
        """The ``regions``/``quorum`` option keys for jobs, validated, ``all`` resolved to the
        regions with a live worker now. ``{}`` when no region is named (default region)."""
        placement = parse_placement(regions, quorum, where)
        live = self.live_regions() if placement.get("regions") == "all" else ()
        return resolve(placement, live, immediate=self.settings.immediate)

    def live_regions(self, workers: Sequence[WorkerBeat] | None = None) -> set[str]:
        """Regions with at least one worker whose heartbeat is recent."""
        return {w.region for w in (self.store.workers() if workers is None else workers)}

    def region_results(self, job_ids: Sequence[int]) -> dict[int, list[ResultRecord]]:
        """Each job's results by region: what ``report.write_*(regions=...)`` and the API
        show beside a job (a job that named no region has its one result, region default)."""
        return region_results(self.store, job_ids)

    def report_no_worker(self) -> int:
        """Report ``no_worker`` for named regions past their bound without a live worker
        (a few pages per call, going on from where the last call stopped)."""
        stored, self._sweep_after = report_no_worker(self.store, self.live_regions(), after_id=self._sweep_after)
        return stored

    def retest(self, job_ids: Sequence[int], *, batch: str | None = None) -> SubmitReport:
        """New jobs for the same URLs and options as these (history is kept)."""
        views = self.store.list_jobs(JobFilter(ids=tuple(job_ids)), limit=len(job_ids))
        if not views:
            return SubmitReport(None)
        created = self.store.create_batch(batch or default_batch_name("retest"))
        report = SubmitReport(created)
        jobs = [NewJob(v.url, NewJob(v.url, v.options).options_json()) for v in sorted(views, key=lambda v: v.id)]
        report.job_ids = self.intake.enqueue(created.id, jobs)
        return report

    def cancel(self, *, batch: str | int | None = None, job_ids: Sequence[int] | None = None,
               count_only: bool = False) -> int:
        """Take back the queued jobs of ``batch`` (name or id), or ``job_ids``, or (neither)
        every queued job: each becomes ``cancelled`` and the workers drop its message
        unchecked (:class:`~runner.jobs.tasks.DoneLookup`). Returns how many (with
        ``count_only``: how many it would take back)."""
        return self.store.cancel_jobs(batch=batch, ids=job_ids, count_only=count_only)

    # ------------------------------------------------------------------ waiting and status

    def wait(self, batch_id: int, *, timeout: float | None = None, poll: float = 0.5,
             slowest: int = 0) -> tuple[Counts, bool]:
        """Wait until no job of the batch is queued or running (or the timeout); returns its
        summary and whether it is all done. Woken by each commit (LISTEN/NOTIFY on
        PostgreSQL), polling every ``poll`` seconds as a fallback."""
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self.store.listener()
        next_sweep = time.monotonic() + 1.0
        try:
            while True:
                if time.monotonic() >= next_sweep:
                    # A region without a live worker would keep a job waiting: report it
                    # no_worker once its bound has passed (workers do this too).
                    self.report_no_worker()
                    next_sweep = time.monotonic() + 1.0
                summary = batch_summary(self.store, batch_id)
                if summary.pending == 0:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                listener.wait(poll if left is None else min(poll, left))
        finally:
            listener.close()
        if slowest:
            summary = batch_summary(self.store, batch_id, slowest=slowest)
        return summary, summary.pending == 0

    def status(self) -> Status:
        """Counts, live workers, and the queue depth of each region with a live worker (and
        the default region's, always). The in-memory broker's queues are its process's own:
        none to show."""
        counts = self.store.counts()
        workers = self.store.workers()
        depth = None
        error = None
        regions: dict[str, QueueDepth | None] = {}
        if not self.settings.immediate:
            try:
                regions = dict(self.queue_depths(self.live_regions(workers)))
                depth = regions[DEFAULT_REGION]
            except BrokerError as exc:
                error = str(exc)
        return Status(counts, workers, depth, error, regions)

    def broker_warning(self) -> str | None:
        """None when the broker answers; otherwise what to tell the user at once, before a
        publish goes quiet retrying: that it is unreachable, and for how long it keeps trying.
        A broker URL that can never work (a refused login, a host name that does not
        resolve) raises ConfigError instead: no wait would help."""
        try:
            self.broker.ping()
        except BrokerError as exc:
            return (f"{exc}; the jobs are recorded and sending keeps trying for "
                    f"{self.settings.publish_timeout:g} s (--publish-timeout)")
        return None

    def queue_depths(self, regions: Iterable[str]) -> dict[str, QueueDepth]:
        """Each region's queue depth, the default region's first and always (BrokerError
        when RabbitMQ cannot say)."""
        names = [DEFAULT_REGION, *sorted(set(regions) - {DEFAULT_REGION})]
        return {region: self.broker.ping(queue_for(self.settings.queue, region)) for region in names}


def default_batch_name(source: str) -> str:
    return f"{source} {utcnow().strftime('%Y-%m-%d %H:%M:%S')}"


__all__ = ["Runtime", "Status", "SubmitReport", "default_batch_name"]
