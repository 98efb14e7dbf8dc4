"""What a ``runner start`` process is to the pool: the check task on a Runtime.

The pool (:mod:`runner.taskq.pool`) knows nothing of URLs or of the database; this
service gives it the app whose check task it runs, says that a result the database could
not take yet is given back for redelivery (not dead-lettered), and writes the worker's
heartbeat row (with its region), after which it reports regions without a live worker.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import cast

from db import StoreUnavailable, WorkerBeat, utcnow
from runner.jobs.runtime import Runtime
from runner.taskq.app import App
from runner.taskq.broker import AmqpBroker
from runner.taskq.pool import PoolStats

log = logging.getLogger("urltester.worker")


class CheckService:
    """The pool's :class:`~runner.taskq.pool.Service` for checking URLs."""

    give_back_on: tuple[type[BaseException], ...] = (StoreUnavailable,)

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app: App = runtime.app
        self.broker = cast("AmqpBroker", runtime.broker)  # `runner start` refuses memory:// (cli/worker.py)
        self.name = runtime.worker_id

    def warm_up(self) -> None:
        _ = self.runtime.checker, self.runtime.writer
        # Alerts' outbox: delivered by a thread of every worker process, never a check slot.
        from runner.jobs.alerts import start_sender

        self.alert_sender = start_sender(self.runtime.store, self.runtime.settings, worker=self.name)

    def beat(self, stats: PoolStats) -> None:
        beat = WorkerBeat(
            id=self.name, host=socket.gethostname(), pid=os.getpid(), queue=self.broker.queue,
            concurrency=stats.concurrency, processed=stats.processed, started_at=stats.started_at,
            last_seen=utcnow(), region=self.runtime.settings.region, concurrency_max=stats.max_concurrency,
        )
        try:
            self.runtime.store.heartbeat(beat)
            self.runtime.pacer.renew()  # leases of the checks in flight on limited hosts
        except StoreUnavailable as exc:
            log.warning("heartbeat not written: %s", exc)
            return
        try:
            # Every worker, whatever its region, reports the named regions that have had no
            # live worker for their bound (idempotent, so many workers at once is fine).
            self.runtime.report_no_worker()
        except Exception as exc:  # noqa: BLE001 - the heartbeat thread must outlive any of it
            log.warning("regions without a worker not reported: %s: %s", type(exc).__name__, exc)

    def stopped(self) -> None:
        sender = getattr(self, "alert_sender", None)
        if sender is not None:
            sender.stop(timeout=5)  # a delivery cut short is claimed again when its lease ends
        try:
            self.runtime.store.forget_worker(self.name)
        except StoreUnavailable:
            pass
        self.runtime.pacer.close()
        self.runtime.store.close()
