"""The tasks that tie the check to the store: what a worker actually runs.

``check(job_id, url, options)`` checks one job's URL and stores its result, idempotently.
A redelivered call whose job already has a result is skipped (exactly one result per job).
That look-up is only a saving: when the database cannot answer it, the check runs anyway
and its result waits in the writer (which retries) like any other. Giving the message
back instead would have it redelivered at once, fail again, and burn through RabbitMQ's
delivery limit in about a second: a database outage would dead-letter every redelivered job.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol

from db import ResultRecord, Store, StoreUnavailable, utcnow
from runner.check.checker import Checker, CheckResult
from runner.check.options import CheckOptions
from runner.jobs.pacing import Pacer
from runner.jobs.writer import ResultWriter
from runner.taskq.app import App, Task, context

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


def register(app: App, runtime: CheckParts) -> Task:
    @app.task(name=CHECK_TASK)
    def check(job_id: int, url: str, options: dict[str, Any], pace: dict[str, Any] | None = None) -> str | Future[str]:
        """Check one job's URL and hand the result to the writer.

        Returns a future that resolves to the outcome once the result is committed (the
        consumer acks then; inline callers wait for it), or ``"skipped"``. Raises Defer
        when its host's limits say "not yet" (``pace`` carries a reserved rate slot).
        """
        opts = CheckOptions.from_json(options)  # OptionError: poison, dead-lettered
        if getattr(context, "redelivered", False) and _already_done(runtime, job_id):
            return "skipped"
        ticket = runtime.pacer.admit(url, pace)  # Defer: back later, no thread held
        try:
            runtime.writer.started(job_id)
            result = runtime.checker.check(url, opts)
        finally:
            ticket.release()
        return runtime.writer.submit(to_record(job_id, result, worker=runtime.worker_id))

    return check


def _already_done(runtime: CheckParts, job_id: int) -> bool:
    try:
        return bool(runtime.store.done_ids([job_id]))
    except StoreUnavailable:
        return False  # check again; storing is idempotent and the writer waits for the database


def to_record(job_id: int, result: CheckResult, *, worker: str | None = None) -> ResultRecord:
    return ResultRecord(
        job_id=job_id,
        outcome=result.outcome,
        ok=bool(result.ok),
        status_code=result.status_code,
        total_ms=result.total_ms,
        attempts=result.attempts,
        error=result.error,
        final_url=result.final_url,
        bytes=result.bytes,
        content_type=result.content_type,
        title=result.title,
        checked_at=utcnow(),
        detail=result.as_dict(),
        worker=worker,
    )
