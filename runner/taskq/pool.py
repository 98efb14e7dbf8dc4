"""The consumer pool: worker threads (and processes) fed by one connection thread.

It runs any :class:`~runner.taskq.app.App`'s calls; what the calls do, and what a worker
reports about itself, is the application's (a :class:`Service`, built in each process).

Per process:

    main thread (connection thread)          worker threads (``concurrency``)
    ─ broker.consume: receive, heartbeat ──▶ work queue ──▶ app.execute(call)
    ◀── acks / requeues / dead-letters ───── Delivery.ack() etc. (queued back)

A message is acked only when every call in it has finished and its result is committed.
On SIGTERM/SIGINT the consumer is cancelled, calls not yet started are given back
(requeued), calls in flight get ``shutdown_timeout`` seconds to finish; whatever is still
unacked then is redelivered by RabbitMQ to another worker.

RabbitMQ closes a channel that keeps a message unacked past its consumer timeout (30 min
by default), and redelivers everything on it. A message's calls wait their turn behind
``prefetch * pack`` others, so on large deadlines (up to 300 s) the wait alone could pass
that. A call not yet started when its message has been held ``hold_budget`` seconds is
therefore handed on: re-published (confirmed) as a new message, and the old one is acked
once its started calls finish. A message is held at most ``hold_budget`` plus one call
(deadline + the writer's retries): 10 + 7 minutes on the defaults and the largest deadline.

How many calls run at once is :mod:`runner.taskq.concurrency`'s: the pool runs as many
threads as it says (starting more when it grows; a thread retires after its call
when it shrinks), and the prefetch follows it. A call may :class:`~runner.taskq.app.Defer` itself: a delay of up to
``LOCAL_DEFER_MAX`` (1/8 s) waits in this process's timer (its message stays unacked), a
longer one is re-published to a delay queue with its message's ack (the message's deferred
calls together, one message per delay bucket), so a deferred call never holds a thread,
nor a prefetch slot for longer than that, while it waits.

The processes, their supervisor, systemd's watch and ``/metrics`` are
:mod:`runner.taskq.supervisor`'s; each process reports to a :class:`~runner.taskq.systemd.Monitor`
that it is consuming and that its connection loop still turns.
"""

from __future__ import annotations

import _thread
import heapq
import itertools
import logging
import math
import os
import queue as queue_mod
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from runner.taskq.app import (
    DEFAULT_PACK,
    DELAY_BUCKETS,
    App,
    Call,
    Defer,
    PoisonMessage,
    context,
    decode,
    delay_bucket,
    encode,
)
from runner.taskq.broker import AmqpBroker, Delivery
from runner.taskq.concurrency import ConcurrencyController
from runner.taskq.options import PoolOptions
from runner.taskq.systemd import (
    Monitor,
    NoMonitor,
)

log = logging.getLogger("urltester.worker")

HEARTBEAT_EVERY = 5.0
SWITCH_INTERVAL = 0.02  # seconds: the GIL's switch interval up to 400 threads (switch_interval)
SWITCH_PER_THREAD = 0.00005  # beyond that, 50 us a thread: 51 ms at 1,024
SWITCH_INTERVAL_MAX = 0.1
TICK_EVERY = 0.25  # seconds between two reports of a connection loop's progress to its Monitor
PREFETCH_CALLS = 2  # calls prefetched per call the concurrency lets run
# Seconds: a shorter Defer waits in the process's timer (its message unacked meanwhile), a
# longer one in the broker. Small, the smallest delay queue's TTL: a call waiting here holds
# its message, and so a prefetch slot that other hosts' checks need (a limited host's
# backlog of calls 0.2-1 s from their slots once filled the prefetch: head-of-line blocking).
LOCAL_DEFER_MAX = DELAY_BUCKETS[0]


@dataclass(frozen=True)
class PoolStats:
    """What a worker process says about itself in its heartbeat."""

    concurrency: int  # calls allowed at once now (the adaptive concurrency's current value)
    processed: int
    started_at: datetime
    max_concurrency: int | None = None  # the adaptive concurrency's ceiling; None when fixed


class Service(Protocol):
    """What the application gives the pool, built in each worker process.

    ``give_back_on``: a call failing with one of these is requeued (its message given back
    for redelivery) instead of dead-lettered: a dependency that is away, not a bad call.
    """

    app: App
    broker: AmqpBroker
    name: str
    give_back_on: tuple[type[BaseException], ...]

    def warm_up(self) -> None:
        """Build what the first calls need (imports, TLS contexts) before consuming."""

    def beat(self, stats: PoolStats) -> None:
        """Every ``HEARTBEAT_EVERY`` seconds, from a thread of its own; must not raise."""

    def stopped(self) -> None:
        """The process stops consuming: forget it, close connections; must not raise."""


class StopSignal:
    """A stop request that signal handlers may make.

    A handler runs between two bytecodes of the main thread, possibly while that thread
    holds a lock, and a second signal can arrive while the first handler runs. So the
    handler only assigns a flag: no lock, no logging. (With ``threading.Event.set`` in the
    handler, a SIGTERM from systemd and one from the supervisor arriving together left a
    worker deadlocked on the event's own lock.) The event follows the flag the next time
    anyone asks ``is_set``; the connection loop asks every 50 ms.
    """

    def __init__(self) -> None:
        self.requested = False
        self._event = threading.Event()

    def request(self) -> None:
        """Safe in a signal handler."""
        self.requested = True

    def set(self) -> None:
        self.requested = True
        self._event.set()

    def is_set(self) -> bool:
        if self.requested and not self._event.is_set():
            self._event.set()
        return self.requested

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout) or self.requested


class _Message:
    """Book-keeping for one delivery: how many of its calls are still open."""

    def __init__(self, delivery: Delivery, calls: list[Call]) -> None:
        self.delivery = delivery
        self.open = len(calls)
        self.give_back = False  # requeue instead of ack once every call is settled
        self.handed_on: list[Call] = []  # not started in time: re-published before the ack
        self.deferred: dict[float, list[Call]] = {}  # delay bucket -> calls to publish there before the ack
        self.received = time.monotonic()
        self.cancelled = False  # its connection is gone: skip calls not started
        self.lock = threading.Lock()

    def settle(self, *, give_back: bool = False) -> bool:
        """One call settled; True when it was the last one."""
        with self.lock:
            self.give_back = self.give_back or give_back
            self.open -= 1
            return self.open == 0


def switch_interval(threads: int) -> float:
    """The GIL's switch interval for a process of ``threads`` worker threads.

    Dozens of threads that mostly wait on sockets wake up together and fight for the GIL; at
    the default 5 ms that contention cost ~1 ms of CPU per check (scripts/bench), and 20 ms
    lets a thread finish its burst of parsing. A thread waiting for the GIL wakes once an
    interval to ask for it, so with a thousand waiting (1 s targets, whose answers arrive
    together) 20 ms was 70,000 to 85,000 context switches a second and half the CPU in the
    kernel for seconds: past 400 threads the interval grows with them (51 ms at 1,024; up to
    0.1 s). 1 s targets then checked at 945 URLs/s against 712 (medians of three alternating
    runs; workers 1.31 against 1.91 ms of CPU per URL), and 0 to 500 ms targets, held at 128
    to 512 threads, kept their rates and CPU (issue 25). Up to 400 threads a check's timings
    keep the 20 ms bound on a wait for the GIL."""
    return min(SWITCH_INTERVAL_MAX, max(SWITCH_INTERVAL, threads * SWITCH_PER_THREAD))


def start_bare(target: Callable[[], None]) -> None:
    """Run ``target`` on a bare thread (see ``WorkerProcess._spawn``). Anything that asks
    ``threading.current_thread()`` on it (every log record does) leaves a _DummyThread in
    threading's table that nothing removes: over months of a pool growing and shrinking,
    a leak. The thread removes its own entry as it ends."""
    def run() -> None:
        try:
            target()
        finally:
            threading._active.pop(_thread.get_ident(), None)  # type: ignore[attr-defined]

    _thread.start_new_thread(run, ())


class WorkerProcess:
    """One worker process: a connection thread and ``concurrency`` worker threads."""

    def __init__(self, service: Service, options: PoolOptions, monitor: Monitor | None = None) -> None:
        self.service = service
        self.options = options
        self.monitor: Monitor = monitor or NoMonitor()
        self._next_tick = 0.0
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.broker = service.broker
        self.stop = StopSignal()
        self._work: queue_mod.Queue[tuple[_Message, Call] | None] = queue_mod.Queue()
        self._messages: set[_Message] = set()
        self._messages_lock = threading.Lock()
        self._stop_deadline: float | None = None
        self._count = itertools.count(1)
        self._seq = itertools.count()  # next() on it is atomic: many threads count at once
        self.processed = 0
        self.started_at = datetime.now(UTC)
        self.controller = ConcurrencyController(options.concurrency_options())
        self._live = 0  # worker threads running now: the concurrency, give or take a retiring one
        self._live_lock = threading.Lock()
        self._calls_per_message = float(DEFAULT_PACK)  # until deliveries say otherwise: a bulk pack
        self._timer: list[tuple[float, int, _Message, Call]] = []  # short defers, by due time
        self._timer_cond = threading.Condition()

    @property
    def concurrency(self) -> int:
        """Calls this process lets run at once now: for the heartbeat and a metrics gauge."""
        return self.controller.current

    def prefetch(self) -> int:
        """Messages RabbitMQ may send ahead: ``--prefetch``, or enough for twice the concurrency's
        calls as it moves (messages carry ~10 calls in bulk, 1 when interactive), plus the
        messages that only a slow call holds open (below). More would hoard: on a fleet, the
        first host up would take a whole batch."""
        if self.options.prefetch:
            return self.options.prefetch
        wanted = max(1, math.ceil(PREFETCH_CALLS * self.controller.current / self._calls_per_message))
        # A message is acked when its last call is over, so one slow call holds its pack's
        # prefetch slot: on the mix (1% of calls hanging 10 s, 10 calls a message) about half
        # the slots were such messages, and 128 threads found nothing to do half the time
        # (its windows never full, so the default never grew: 0.71 of the best fixed; issue 25).
        # The messages held beyond those the calls waiting and in flight need are slots
        # of their own, up to as many again, in quarters of ``wanted``: a new prefetch is a
        # new consumer (RabbitMQ applies basic.qos to consumers started after it), and the
        # broker makes one at once only for a change past a quarter.
        busy = (self._work.qsize() + self._in_flight) / self._calls_per_message
        held = min(wanted, max(0, len(self._messages) - math.ceil(busy)))
        return wanted + held * 4 // wanted * wanted // 4

    # ------------------------------------------------------------------ connection thread

    def on_delivery(self, delivery: Delivery) -> None:
        try:
            calls = decode(delivery.body, delivery.headers)
        except PoisonMessage as exc:
            delivery.dead_letter(str(exc))
            return
        if not calls:
            delivery.ack()
            return
        self._calls_per_message += (len(calls) - self._calls_per_message) * 0.05  # moving average
        message = _Message(delivery, calls)
        with self._messages_lock:
            self._messages.add(message)
        for call in calls:
            self._work.put((message, call))

    def drained(self) -> bool:
        if self._stop_deadline is None:
            self.monitor.stopping()
            log.info("stopping: finishing checks in flight (up to %.0f s)", self.options.shutdown_timeout)
            if threading.current_thread() is threading.main_thread():
                # Stopping already: more SIGTERMs (systemd signals every process of the unit)
                # must not kill the process with its default action while it winds down.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self._stop_deadline = time.monotonic() + self.options.shutdown_timeout
        with self._messages_lock:
            if not self._messages:
                return True
        if time.monotonic() >= self._stop_deadline:
            log.warning("shutdown timeout reached; unfinished checks will be redelivered")
            return True
        return False

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + TICK_EVERY
            self.monitor.tick(self.processed, self._in_flight)

    def on_connection_lost(self) -> None:
        with self._messages_lock:
            lost, self._messages = self._messages, set()
        for message in lost:
            message.cancelled = True

    # ------------------------------------------------------------------ worker threads

    def _spawn(self, n: int) -> None:
        # Bare threads (``_thread``), not ``threading.Thread``: its start() waits until the
        # new thread has run, and that takes the GIL twice. Among hundreds of busy threads
        # and a 20 ms switch interval each start waited tens of milliseconds: a traced run on
        # 1 s targets spent 3 to 5 s starting the 512 threads of one growth (and the decisions
        # after it, on the same thread, waited too), and 512 starts in a process of 512 busy
        # threads took 20.7 s against 0.2 s for bare ones (issue 25). Like daemon threads they
        # do not hold up the exit (hard_exit); faulthandler's stack dumps show them.
        for _ in range(n):
            with self._live_lock:
                self._live += 1
            start_bare(self._worker)

    def _retire(self) -> bool:
        """True (and this thread counted out) if there are more threads than the concurrency."""
        if self._live <= self.controller.current:  # the common case: no lock
            return False
        with self._live_lock:
            if self._live > self.controller.current:
                self._live -= 1
                return True
        return False

    def _worker(self) -> None:
        while True:
            if self._retire():
                return
            item = self._work.get()
            if item is None:
                with self._live_lock:
                    self._live -= 1
                return
            message, call = item
            if message.cancelled:
                continue
            if self.stop.is_set():
                self._settle(message, give_back=True)  # not started: let another worker have it
                continue
            if time.monotonic() - message.received > self.options.hold_budget:
                with message.lock:
                    message.handed_on.append(call)  # a new message, so this one is acked in time
                self._settle(message)
                continue
            started = time.monotonic()
            if self._run(message, call):
                # Only calls that ran: a deferred one takes a millisecond, and counting those
                # drove the median (the controller's base) far below the checks' own latency.
                self.controller.record(time.monotonic() - started)
            else:
                self.controller.deferred()

    def _run(self, message: _Message, call: Call) -> bool:
        """Run one call; False if it deferred itself (it did not run)."""
        context.redelivered = message.delivery.redelivered
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            result = self.service.app.execute(call, wait=False)
        except Defer as deferred:
            with self._in_flight_lock:
                self._in_flight -= 1
            self._defer(message, deferred.apply(call), deferred.delay)
            return False
        except Exception as exc:  # noqa: BLE001 - a crashing call must not take the worker down
            self._finished(message, call, exc)
            return True
        if isinstance(result, Future):
            # Checked; its result waits for the writer's next commit. This thread moves on,
            # and the call is settled (so the message acked) from the writer once committed.
            result.add_done_callback(lambda done: self._finished(message, call, done.exception()))
        else:
            self._finished(message, call, None)
        return True

    def _defer(self, message: _Message, call: Call, delay: float) -> None:
        if delay <= LOCAL_DEFER_MAX:
            with self._timer_cond:
                heapq.heappush(self._timer, (time.monotonic() + delay, next(self._seq), message, call))
                self._timer_cond.notify()
            return
        # Published with the ack, one message per delay bucket: a pack of ten checks of one
        # limited host was ten publishes, and 10,000 of them ahead of another host's batch
        # in the queue held it up (bench-fleet --waiting).
        with message.lock:
            message.deferred.setdefault(delay_bucket(delay), []).append(call)
        self._settle(message)

    def _timer_loop(self) -> None:
        """Puts short-deferred calls back on the work queue when they are due."""
        while True:
            with self._timer_cond:
                while not self._timer or self._timer[0][0] > time.monotonic():
                    self._timer_cond.wait(self._timer[0][0] - time.monotonic() if self._timer else None)
                _, _, message, call = heapq.heappop(self._timer)
            self._work.put((message, call))

    def _control_loop(self) -> None:
        """Lets the adaptive concurrency decide, a few times a window."""
        while not self.stop.wait(self.controller.options.window / 4):
            before = self.controller.current
            self.controller.tick(waiting=self._work.qsize() > 0)
            if self.controller.current != before:
                sys.setswitchinterval(switch_interval(self.controller.current))
            missing = self.controller.current - self._live
            if missing > 0:
                self._spawn(missing)

    def _finished(self, message: _Message, call: Call, exc: BaseException | None) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1
        give_back = False
        if exc is None:
            self.processed = next(self._count)
        elif isinstance(exc, PoisonMessage):
            self._dead(message, call, str(exc))
        elif isinstance(exc, self.service.give_back_on):
            log.warning("call %s failed for now (%s); it will be redelivered", call.id, exc)
            give_back = True
        else:
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
            self._dead(message, call, f"task {call.task!r} raised {type(exc).__name__}: {exc}{at}")
        self._settle(message, give_back=give_back)

    def _dead(self, message: _Message, call: Call, reason: str) -> None:
        message.delivery.dead_letter(reason, body=encode([call]))

    def _settle(self, message: _Message, *, give_back: bool = False) -> None:
        if message.settle(give_back=give_back):
            with self._messages_lock:
                self._messages.discard(message)
            if not message.cancelled:
                if message.give_back:
                    message.delivery.requeue()
                else:
                    if message.handed_on:
                        log.warning("%d calls waited more than %.0f s; handing them on in a new message",
                                    len(message.handed_on), self.options.hold_budget)
                        message.delivery.hand_on(encode(message.handed_on))
                    for bucket, calls in message.deferred.items():
                        message.delivery.defer(encode(calls), bucket)
                    message.delivery.ack()

    # ------------------------------------------------------------------ heartbeat

    def stats(self) -> PoolStats:
        return PoolStats(self.controller.current, self.processed, self.started_at,
                         None if self.options.concurrency else self.options.max_concurrency)

    def _heartbeat(self) -> None:
        while not self.stop.wait(HEARTBEAT_EVERY):
            self.service.beat(self.stats())

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        sys.setswitchinterval(switch_interval(self.controller.current))
        # Build the checker and the writer now (imports, TLS contexts), not inside the
        # first checks, whose timings would carry that cost.
        self.service.warm_up()
        self._spawn(self.controller.current)
        threading.Thread(target=self._heartbeat, name="urltester-heartbeat", daemon=True).start()
        threading.Thread(target=self._timer_loop, name="urltester-timer", daemon=True).start()
        if self.controller.adaptive:
            threading.Thread(target=self._control_loop, name="urltester-concurrency", daemon=True).start()
        self.service.beat(self.stats())
        log.info("worker %s started: %d threads, %s", self.service.name, self.controller.current,
                 f"adaptive concurrency from {self.controller.current} up to {self.options.max_concurrency}"
                 if self.controller.adaptive else f"fixed concurrency {self.controller.current}")
        self.broker.consume(
            prefetch=self.prefetch, on_delivery=self.on_delivery, stop=self.stop,
            drained=self.drained, on_connection_lost=self.on_connection_lost,
            on_connected=self.monitor.ready, tick=self.tick,
        )
        for _ in range(self._live + 1):
            self._work.put(None)
        log.info("worker %s stopped after %d calls", self.service.name, self.processed)
        # Threads still running calls are daemons: their messages are unacked and will be redelivered.
        self.service.stopped()
        return 0

    def install_signals(self) -> None:
        def handle(signum: int, frame: object) -> None:
            self.stop.request()  # nothing more here: see StopSignal

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
