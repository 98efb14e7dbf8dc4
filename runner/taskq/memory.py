"""The in-memory broker (``memory://``): the embedded default and the unit tests' broker.

It stands where RabbitMQ's :class:`~runner.taskq.broker.AmqpBroker` stands, behind the same
:class:`~runner.taskq.app.Broker` interface, so an app, the intake and the runtime take one
path whichever broker they have (Dramatiq's ``StubBroker``, Huey's immediate mode). Its
consumer is this process: a message published to it is decoded as any delivery is
(:func:`~runner.taskq.app.decode`) and each of its calls is run by the app the broker is
attached to,

* in a pool of ``workers`` threads, ``publish`` returning at once with each call's future;
  it blocks while ``max_pending`` calls wait to run (flat memory for a million-job
  import, as RabbitMQ's flow control would), or
* with ``inline``, on the publishing thread, before ``publish`` returns: deterministic,
  so a unit test needs no waiting.

Its queues live and die with this process: another process cannot see them (no ``runner
start`` can consume them, and ``runner status`` elsewhere has no depth to show), calls not
started when it is closed are dropped (their jobs stay queued in the database, where
``runner requeue --stale`` finds them), and it keeps no dead letters: a call that fails is
logged and its future holds the error. :meth:`MemoryBroker.flush` is how a process that
must not end before its calls do (``runner submit`` on the embedded default) waits for them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from runner.taskq.app import Call, PoisonMessage, QueueDepth, decode

if TYPE_CHECKING:
    from runner.taskq.app import App

log = logging.getLogger("urltester.runner")

SCHEME = "memory"
_THREAD_PREFIX = "urltester-check"
MAX_PENDING = 10_000  # calls waiting to run before publish blocks: two chunks of an import


def is_memory_url(url: str) -> bool:
    """True for a ``memory://`` broker URL (the embedded default)."""
    return url.partition(":")[0].strip().lower() == SCHEME


class MemoryBroker:
    """Publishes into this process and runs what it publishes (see the module's docstring)."""

    url = f"{SCHEME}://"
    shown = url

    def __init__(self, queue: str = "default", *, workers: int = 8, inline: bool = False,
                 max_pending: int = MAX_PENDING) -> None:
        """``queue``: the name it answers to; every queue's consumer is this process."""
        self.queue = queue
        self.workers = workers
        self.inline = inline
        self.max_pending = max(1, max_pending)
        self._app: App | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._cond = threading.Condition()
        self._pending = 0  # calls published and not yet finished

    def attach(self, app: App) -> None:
        self._app = app

    def publish(self, messages: Sequence[bytes], *, headers: dict[str, Any] | None = None,
                routing_key: str | None = None) -> list[Future[Any]]:
        """Run the messages' calls here (see the class); returns each call's future, in order."""
        app = self._app
        if app is None:
            raise RuntimeError("the in-memory broker has no app attached to run its calls")
        calls: list[Call] = []
        for body in messages:
            try:
                calls += decode(body, headers)
            except PoisonMessage as exc:  # a consumer would dead-letter it; there are no dead letters here
                log.error("message dropped: %s", exc)
        if self.inline:
            return [self._run_here(app, call) for call in calls]
        futures = []
        for call in calls:
            with self._cond:
                # Hazard: a call that publishes from a pool thread (a crawl's page enqueuing
                # its links) while the broker is full would wait for itself: it does not wait.
                if not threading.current_thread().name.startswith(_THREAD_PREFIX):
                    self._cond.wait_for(lambda: self._pending < self.max_pending)
                self._pending += 1
            future = self._executor().submit(app.execute, call)
            future.add_done_callback(self._finished(call))
            futures.append(future)
        return futures

    def ping(self, queue: str | None = None) -> QueueDepth:
        """This process's calls not finished yet, and its threads (always reachable)."""
        return QueueDepth(self._pending, 1 if self.inline else self.workers, 0)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every call published so far has finished (False if ``timeout`` passed first)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Let the calls running finish; drop those not started (their jobs stay queued)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._cond:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=_THREAD_PREFIX)
            return self._pool

    @staticmethod
    def _run_here(app: App, call: Call) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(app.execute(call))
        except Exception as exc:  # noqa: BLE001 - kept for the handle's result(), logged like the pool's
            done.set_exception(exc)
            _log_failure(call, done)
        return done

    def _finished(self, call: Call) -> Callable[[Future[Any]], None]:
        def done(future: Future[Any]) -> None:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            _log_failure(call, future)

        return done


def _log_failure(call: Call, future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        exc = future.exception()
        log.error("task %s (call %s) failed: %s: %s", call.task, call.id, type(exc).__name__, exc)
