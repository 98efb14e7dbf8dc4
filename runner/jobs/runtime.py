"""The runtime the CLI and the TUI share: settings, store, app and tasks, wired once.

``Runtime.submit`` is the one way jobs enter the system: validate everything first,
record the jobs (the database is the source of truth), then publish one call per job with
publisher confirms. If the broker cannot confirm, the jobs stay recorded and marked, and
``runner requeue --stale`` (or the next submit's retry) publishes them later.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from db import Batch, JobFilter, JobView, NewJob, Store, open_store, utcnow
from runner.check.options import CheckOptions, parse_options
from runner.errors import BrokerError, InvalidInput, UnsentJobs
from runner.jobs.settings import Settings
from runner.jobs.tasks import CHECK_TASK, register
from runner.jobs.urls import Rejected, normalise
from runner.jobs.writer import ResultWriter
from runner.taskq.app import DEFAULT_PACK, App, Call
from runner.text import mask_url

if TYPE_CHECKING:
    from runner.check.checker import Checker
    from runner.jobs.pacing import Pacer
    from runner.taskq.broker import AmqpBroker, QueueDepth

CHUNK = 5000  # jobs recorded per transaction and published per confirm round
FIRST_CHUNK = 500  # ... except the first: workers get going while the rest is recorded


@dataclass
class SubmitReport:
    """What a submit did: the batch, the jobs recorded, the inputs refused."""

    batch: Batch | None
    job_ids: list[int] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    publish_error: str | None = None
    duplicates: int = 0


@dataclass
class Status:
    counts: Any
    workers: list[Any]
    queue: QueueDepth | None
    broker_error: str | None = None


class Runtime:
    """Everything a process of urltester needs, built from settings at the entry point."""

    def __init__(self, settings: Settings, *, store: Store | None = None, immediate_workers: int = 8,
                 db_connections: int = 8) -> None:
        self.settings = settings
        self.store = store or open_store(settings.database_url, max_connections=db_connections)
        self.broker: AmqpBroker | None = None
        if not settings.immediate:
            from runner.taskq.broker import open_broker

            self.broker = open_broker(settings.broker_url, settings.queue, publish_timeout=settings.publish_timeout)
        self.app = App(self.broker, immediate_workers=immediate_workers)
        self.check_task = register(self.app, self)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._checker: Checker | None = None
        self._writer: ResultWriter | None = None
        self._pacer: Pacer | None = None
        self._lock = threading.Lock()

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
                self._checker = Checker(policy, on_retry_after=pacer.pause)
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

    def validate(self, texts: Iterable[tuple[str, str | None]], options: CheckOptions,
                 *, keep_duplicates: bool = True) -> tuple[list[NewJob], list[Rejected], int]:
        """Normalise ``(text, where)`` pairs; returns jobs, refusals and duplicates dropped."""
        jobs: list[NewJob] = []
        rejected: list[Rejected] = []
        seen: set[str] = set()
        duplicates = 0
        opts = options.to_json()
        for text, where in texts:
            try:
                url = normalise(text)
            except InvalidInput as exc:
                rejected.append(Rejected(text, exc.message, where))
                continue
            if not keep_duplicates:
                if url in seen:
                    duplicates += 1
                    continue
                seen.add(url)
            jobs.append(NewJob(url, opts))
        return jobs, rejected, duplicates

    def submit(self, urls: Sequence[str], *, options: CheckOptions | dict[str, Any] | None = None,
               batch: str | None = None, idempotency_key: str | None = None, strict: bool = False,
               keep_duplicates: bool = True) -> SubmitReport:
        """Validate, record and enqueue URLs. Invalid ones are reported, never half-recorded.

        With ``strict`` nothing is recorded when any input is invalid. Raises BrokerError
        if the broker did not confirm (the jobs are recorded and marked for requeue).
        """
        if isinstance(options, dict):
            options = parse_options(options)
        jobs, rejected, duplicates = self.validate(((u, None) for u in urls), options or CheckOptions(),
                                                   keep_duplicates=keep_duplicates)
        report = SubmitReport(None, rejected=rejected, duplicates=duplicates)
        if not jobs or (strict and rejected):
            return report
        report.batch = self.store.create_batch(batch or default_batch_name("submit"), idempotency_key)
        if report.batch.existed:
            return report
        report.job_ids = self.record_and_publish(report.batch.id, jobs)
        return report

    def record_and_publish(self, batch_id: int | None, jobs: Sequence[NewJob]) -> list[int]:
        """Record jobs then publish them, ``CHUNK`` at a time (the first chunk smaller, so
        workers start while the rest is recorded). Returns the job ids.

        If the broker fails, the remaining chunks are still recorded (marked unsent, like
        the failed one) before BrokerError is raised: everything accepted is kept, and
        ``runner requeue --stale`` (or the TUI, once the broker is back) sends it.
        """
        ids: list[int] = []
        failure: BrokerError | None = None
        start = 0
        while start < len(jobs):
            chunk = jobs[start:start + (FIRST_CHUNK if start == 0 else CHUNK)]
            start += len(chunk)
            chunk_ids = self.store.insert_jobs(batch_id, chunk)
            ids.extend(chunk_ids)
            if failure is not None:
                self.store.mark_publish_failed(chunk_ids, str(failure))
                continue
            try:
                self.publish([(i, j.url, j.options) for i, j in zip(chunk_ids, chunk, strict=True)])
            except BrokerError as exc:
                failure = exc
        if failure is not None:
            raise UnsentJobs(str(failure), recorded=len(ids)) from failure
        return ids

    def publish(self, jobs: Sequence[tuple[int, str, dict[str, Any]]], *, requeued: bool = False) -> None:
        """Publish check calls for recorded jobs; on failure mark them and raise BrokerError."""
        if not jobs:
            return
        calls = [Call(CHECK_TASK, (job_id, url, options)) for job_id, url, options in jobs]
        ids = [job_id for job_id, _, _ in jobs]
        pack = DEFAULT_PACK if len(calls) > 1 else 1
        try:
            self.app.enqueue(calls, pack=pack, headers={"x-urltester-requeued": True} if requeued else None)
        except BrokerError as exc:
            self.store.mark_publish_failed(ids, str(exc))
            raise
        if self.broker is not None:
            self.store.mark_published(ids)

    def retest(self, job_ids: Sequence[int], *, batch: str | None = None) -> SubmitReport:
        """New jobs for the same URLs and options as these (history is kept)."""
        views = self.store.list_jobs(JobFilter(ids=tuple(job_ids)), limit=len(job_ids))
        if not views:
            return SubmitReport(None)
        report = SubmitReport(self.store.create_batch(batch or default_batch_name("retest")))
        jobs = [NewJob(v.url, v.options) for v in sorted(views, key=lambda v: v.id)]
        report.job_ids = self.record_and_publish(report.batch.id, jobs)
        return report

    def requeue_stale(self, older_than: timedelta) -> int:
        """Re-publish jobs not done whose message is older than ``older_than``.

        A duplicate message is harmless (the second result is never stored), so this is
        safe to run from cron while workers are busy.
        """
        total = 0
        after = 0
        cutoff_now = utcnow()
        while True:
            stale = self.store.stale_jobs(older_than, now=cutoff_now, after_id=after, limit=CHUNK)
            if not stale:
                return total
            self.publish([(v.id, v.url, v.options) for v in stale], requeued=True)
            total += len(stale)
            after = stale[-1].id

    # ------------------------------------------------------------------ waiting and status

    def wait(self, job_ids: Sequence[int], *, timeout: float | None = None, poll: float = 0.5) -> tuple[list[JobView], bool]:
        """Wait until every job is done (or the timeout); returns (jobs, all_done)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        listener = self.store.listener()
        pending = set(job_ids)
        try:
            while True:
                for start in range(0, len(job_ids), 1000):
                    part = [i for i in job_ids[start:start + 1000] if i in pending]
                    if part:
                        pending -= self.store.done_ids(part)
                if not pending:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                listener.wait(poll if left is None else min(poll, left))
        finally:
            listener.close()
        views: list[JobView] = []
        for start in range(0, len(job_ids), 1000):
            part = tuple(job_ids[start:start + 1000])
            views.extend(self.store.list_jobs(JobFilter(ids=part), order="oldest", limit=len(part)))
        return views, not pending

    def status(self) -> Status:
        counts = self.store.counts()
        workers = self.store.workers()
        depth = None
        error = None
        if self.broker is not None:
            try:
                depth = self.broker.ping()
            except BrokerError as exc:
                error = str(exc)
        return Status(counts, workers, depth, error)


def default_batch_name(source: str) -> str:
    return f"{source} {utcnow().strftime('%Y-%m-%d %H:%M:%S')}"


__all__ = ["Runtime", "Status", "SubmitReport", "default_batch_name", "mask_url"]
