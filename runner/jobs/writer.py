"""Batched writes from worker threads: many checks finish at once, one transaction stores them.

A worker thread hands its result over with :meth:`ResultWriter.add` and takes its next
call at once; the future it gets back resolves when the result is committed, and only then
is the message acked (late ack). While the database is unreachable the writer retries with
backoff for ``give_up_after`` seconds, every result handed in meanwhile joining the retried
batch, then fails them all (their messages are requeued, never acked).

That window is the writer's share of the bound on how long a message stays unacked (under
RabbitMQ's consumer timeout; see runner/taskq/pool.py), so it is one window per batch in
every path: when a batch is stored one result at a time (the database refused something in
it), those writes share the batch's deadline instead of each waiting its own.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from datetime import datetime

from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from db import ResultRecord, Store, StoreUnavailable, utcnow
from runner import metrics
from runner.backoff import backoff

log = logging.getLogger("urltester.writer")


class ResultWriter:
    def __init__(self, store: Store, *, max_batch: int = 200, linger: float = 0.0,
                 give_up_after: float = 120.0) -> None:
        self.store = store
        self.max_batch = max_batch
        self.linger = linger
        self.give_up_after = give_up_after
        self._cond = threading.Condition()
        self._results: list[tuple[ResultRecord, Future[str]]] = []
        self._started: list[tuple[int, datetime]] = []
        self._closed = False
        self.stored = 0
        self._thread = threading.Thread(target=self._run, name="urltester-writer", daemon=True)
        self._thread.start()

    def started(self, job_id: int) -> None:
        """Mark a job running (soon, batched; never blocks the check). Its ``started_at`` is
        now, when the check begins, not when the batch is written."""
        began = utcnow()
        with self._cond:
            self._started.append((job_id, began))
            self._cond.notify()

    def add(self, record: ResultRecord) -> Future[str]:
        """Queue a result for the next batch; the future resolves to its outcome once it is
        committed (or to the error that stopped it). Storing is idempotent per job."""
        future: Future[str] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("result writer is closed")
            self._results.append((record, future))
            self._cond.notify()
        return future

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._results or self._started or self._closed):
                    self._cond.wait()
                if self._closed and not (self._results or self._started):
                    return
            if self.linger:
                time.sleep(self.linger)  # let a burst of finishing checks join this batch
            with self._cond:
                batch, self._results = self._results[: self.max_batch], self._results[self.max_batch:]
                started, self._started = self._started, []
            self._write(started, batch)

    def _write(self, started: list[tuple[int, datetime]], batch: list[tuple[ResultRecord, Future[str]]],
               deadline: float | None = None) -> None:
        if deadline is None:
            deadline = time.monotonic() + self.give_up_after
        retrying = Retrying(
            stop=stop_after_delay(max(0.0, deadline - time.monotonic())),
            wait=backoff(0.2, 5),
            retry=retry_if_exception_type(StoreUnavailable),
            reraise=True,
            before_sleep=lambda rs: log.warning("database unavailable (%s); retrying",
                                                rs.outcome.exception()),  # type: ignore[union-attr]  # set by then
        )
        try:
            for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        # The database is still away: whatever was handed in since joins this
                        # batch, so every waiting result shares one retry window (worker threads
                        # do not wait for their writes; a queue of batches would each wait theirs).
                        with self._cond:
                            batch.extend(self._results)
                            started.extend(self._started)
                            self._results, self._started = [], []
                    began = time.perf_counter()
                    self.store.store_results([record for record, _ in batch], started=started)
                    metrics.COMMIT_SECONDS.observe(time.perf_counter() - began)
            self.stored += len(batch)
            metrics.STORED.inc(len(batch))
        except Exception as exc:  # noqa: BLE001 - every waiting thread must hear of it
            if not isinstance(exc, StoreUnavailable) and len(batch) > 1:
                # Not the database being away but something in the batch it will not take:
                # store the results one by one, so only the culprit's call fails (and is
                # dead-lettered with the reason), not every call that shared its batch.
                log.warning("storing %d results failed (%s: %s); storing them one by one",
                            len(batch), type(exc).__name__, exc)
                for n, item in enumerate(batch):
                    self._write(started if n == 0 else [], [item], deadline)
                return
            for _, future in batch:
                future.set_exception(exc)
            return
        for record, future in batch:
            future.set_result(record.outcome)
