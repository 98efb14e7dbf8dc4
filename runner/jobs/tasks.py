"""The tasks that tie the check to the store: what a worker actually runs.

``check(job_id, url, options)`` checks one job's URL and stores its result, idempotently.
A call whose job was cancelled (``runner cancel``), or whose (job, region) already has a
result, is dropped without checking (exactly one result per job and region; a cancelled
job never gets one), whether delivered for the first time or again. The look-ups of calls
delivered together go to the database together (:class:`DoneLookup`): a worker that takes
over a killed one's messages gets a thousand calls at once, and one query each took it
12 s and more through a 20 ms WAN.
That look-up is only a saving: when the database cannot answer it, the check runs anyway
and its result waits in the writer (which retries) like any other. Giving the message
back instead would have it redelivered at once, fail again, and burn through RabbitMQ's
delivery limit in about a second: a database outage would dead-letter every redelivered job.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from db import DEFAULT_REGION, ResultRecord, Store, StoreError, StoreUnavailable, utcnow
from db.regions import Placement
from runner import metrics
from runner.check.options import CheckOptions
from runner.check.outcomes import OUTCOMES
from runner.errors import ConfigError, OptionError
from runner.fields import RESULT_KEYS
from runner.jobs.gather import Gather
from runner.jobs.regions import split_placement, validate_region
from runner.taskq.app import App, Task

if TYPE_CHECKING:  # the checker (requests, urllib3, ssl) is built on first use, not imported by submitters
    from runner.check.checker import Checker, CheckResult
    from runner.jobs.crawl import Crawler
    from runner.jobs.pacing import Pacer
    from runner.jobs.writer import ResultWriter

CHECK_TASK = "check"


class CheckParts(Protocol):
    """What the check task needs (a :class:`~runner.jobs.runtime.Runtime` has it)."""

    store: Store
    worker_id: str

    @property
    def pacer(self) -> Pacer: ...

    @property
    def checker(self) -> Checker: ...

    @property
    def writer(self) -> ResultWriter: ...

    @property
    def crawler(self) -> Crawler: ...


def register(app: App, runtime: CheckParts) -> Task:
    done = DoneLookup(runtime.store)

    @app.task(name=CHECK_TASK)
    def check(job_id: int, url: str, options: dict[str, Any], region: str = DEFAULT_REGION,
              pace: dict[str, Any] | None = None) -> str | Future[str]:
        """Check one job's URL from ``region`` (the queue this call came from), within its
        host's fleet-wide limits, and hand the result to the writer.

        Returns a future that resolves to the outcome once the result is committed (the
        consumer acks then; inline callers wait for it), or ``"skipped"``. Raises Defer
        when its host's limits say "not yet" (``pace`` carries a reserved rate slot).
        """
        if not isinstance(options, dict):
            raise OptionError(f"options must be a JSON object, not {type(options).__name__}")
        if not _is_region(region):
            raise OptionError(f"the call's region {region!r} is not a region name")  # poison: dead-lettered
        opts = CheckOptions.from_json(split_placement(options)[0])  # OptionError: poison, dead-lettered
        named = Placement.of(options).named  # a job that named regions has one result per region
        if done.skip(job_id, region if named else None):
            return "skipped"  # cancelled, or checked already (a redelivery): acked unchecked
        ticket = runtime.pacer.admit(url, pace)  # Defer: back later, no thread held
        sink = runtime.crawler.sink(options) if "crawl" in options else None  # a crawl's page: its links
        try:
            runtime.writer.started(job_id)
            with metrics.IN_FLIGHT.track_inprogress():
                result = runtime.checker.check(url, opts, sink=sink)
        finally:
            ticket.release()
        count(result)
        if sink is not None:  # its new links are recorded before its result: none lost to a crash
            runtime.crawler.follow(options, url, result.ok, sink)
        return runtime.writer.add(to_record(job_id, result, worker=runtime.worker_id, region=region))

    return check


metrics.label_outcomes(OUTCOMES)
_PHASE_FIELDS = tuple((metrics.CHECK_SECONDS.labels(phase), f"{phase}_ms") for phase in metrics.PHASES)


def count(result: CheckResult) -> None:
    """The check's outcome, attempts and phase timings, into the metrics (no URL label)."""
    metrics.CHECKS.labels(result.outcome).inc()
    metrics.ATTEMPTS.inc(result.attempts)
    for histogram, name in _PHASE_FIELDS:
        ms = getattr(result, name)
        if ms is not None:
            histogram.observe(ms / 1000.0)
    if result.cert_days is not None:
        metrics.CERT_DAYS.observe(result.cert_days)


def _is_region(region: object) -> bool:
    try:
        return isinstance(region, str) and validate_region(region) == region
    except ConfigError:
        return False


class DoneLookup:
    """"Is this job cancelled, or has it (or this region of it) a result?", asked by many
    threads at once and
    answered with one query per region for all of them (:class:`~runner.jobs.gather.Gather`);
    the rows of the jobs so dropped that a cancelled batch still has ``queued`` are then
    turned to ``cancelled`` in one write (:meth:`db.Store.settle_cancelled`).
    A database that cannot answer says "no" (the check runs; storing is idempotent, and
    the writer waits for the database)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._gather: Gather[tuple[int, str | None], bool] = Gather(self._answer)

    def skip(self, job_id: int, region: str | None = None) -> bool:
        return self._gather.ask((job_id, region))

    def _answer(self, asked: list[tuple[int, str | None]]) -> list[bool]:
        by_region: dict[str | None, list[int]] = {}
        for job_id, region in asked:
            by_region.setdefault(region, []).append(job_id)
        found: dict[str | None, set[int]] = {}
        for region, ids in by_region.items():
            try:
                found[region] = self.store.skip_ids(ids, region=region)
            except StoreUnavailable:
                found[region] = set()
        dropped = set().union(*found.values())
        if dropped:
            try:  # a batch taken back: its rows become what every read already calls them
                self.store.settle_cancelled(sorted(dropped))
            except StoreError:
                pass  # only a saving (db.states): the next drop, or none, is as correct
        return [job_id in found[region] for job_id, region in asked]


def to_record(job_id: int, result: CheckResult, *, worker: str | None = None,
              region: str = DEFAULT_REGION) -> ResultRecord:
    """The check's result as the store keeps it: its fields (runner.fields), and all of it as
    ``detail``."""
    detail = result.as_dict()
    return ResultRecord(job_id=job_id, checked_at=utcnow(), detail=detail, worker=worker, region=region,
                        **{key: detail[key] for key in RESULT_KEYS})
