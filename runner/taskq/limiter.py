"""Adaptive concurrency: how many calls a worker process runs at once, found as it goes.

A fixed thread count fits one latency. Checks mostly wait on the network, so on 1 s
targets a process needs hundreds of calls in flight to use its core, while on 0 ms
targets the same hundreds only fight for the GIL. The limit is therefore a delay-based
congestion controller, TCP Vegas-style (and like Netflix's concurrency-limits "gradient"):

* every ``window`` seconds (0.5) it takes the **median** time a call held its slot in that
  window (the median, so 1% of checks hanging until their deadline does not steer it);
* ``base`` is the lowest such median seen: the latency of the targets themselves,
  without queueing in this process;
* while calls wait for a slot (demand exceeds the limit) and the median is within
  ``grow_below`` of ``base`` (more in flight costs no latency: the CPU is not the
  bottleneck yet), the limit grows: doubling until the first sign of congestion (slow
  start), then by a quarter;
* when the median passes ``shrink_above`` × ``base`` (calls now queue for the GIL or
  the core), the limit shrinks by the gradient ``base / median`` (at most to half);
* if the next window's median is no better after such a cut, the latency was the
  targets' own (the mix changed), not ours: ``base`` is reset to it and slow start
  resumes. (A base that followed recent medians instead would drift up with the queueing
  it is meant to detect, and the limit with it.)

``--concurrency N`` fixes the limit (``fixed``); ``--max-concurrency`` bounds it. The pool
starts ``maximum`` threads; a thread waits in :meth:`acquire` while the limit is full, so
an idle thread costs a stack and nothing else. :attr:`current` is what the heartbeat and
metrics read.

Time and CPU are injectable (``clock=``) so tests drive the controller without sleeping.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("urltester.limiter")

DEFAULT_MIN = 8
DEFAULT_MAX = 512
DEFAULT_START = 128  # the old fixed default: never worse at the start


@dataclass(frozen=True)
class LimitOptions:
    """How the limit moves; ``fixed`` pins it at ``start``."""

    start: int = DEFAULT_START
    minimum: int = DEFAULT_MIN
    maximum: int = DEFAULT_MAX
    fixed: bool = False
    window: float = 0.5  # seconds between decisions
    grow_below: float = 1.25
    shrink_above: float = 1.6
    min_samples: int = 8  # completions a window needs before it decides anything

    @classmethod
    def fixed_at(cls, n: int) -> LimitOptions:
        return cls(start=n, minimum=n, maximum=n, fixed=True)


class ConcurrencyLimit:
    """A semaphore whose size the controller moves between ``minimum`` and ``maximum``."""

    def __init__(self, options: LimitOptions, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.options = options
        self._clock = clock
        self._cond = threading.Condition()
        self._limit = max(options.minimum, min(options.maximum, options.start))
        self._inflight = 0
        self._waited = 0  # acquires that found the limit full, this window
        self._samples: list[float] = []
        self._base: float | None = None
        self._cut_at: float | None = None  # the median that made the last cut
        self._window_start = clock()
        self._slow_start = not options.fixed

    @property
    def current(self) -> int:
        """The limit now: calls this process lets run at once."""
        return self._limit

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def adaptive(self) -> bool:
        return not self.options.fixed

    def acquire(self, stop: Callable[[], bool] | None = None) -> bool:
        """Take a slot, waiting while the limit is full; False if ``stop()`` became true."""
        with self._cond:
            if self._inflight >= self._limit:
                self._waited += 1
            while self._inflight >= self._limit:
                if stop is not None and stop():
                    return False
                self._cond.wait(0.05)
            self._inflight += 1
            return True

    def release(self, held: float) -> None:
        """Give the slot back; ``held`` is how long the call had it (seconds)."""
        with self._cond:
            self._inflight -= 1
            if len(self._samples) < 4096:
                self._samples.append(held)
            self._cond.notify()

    def tick(self) -> int:
        """Decide, if a window has passed; returns the limit. Called by the pool's controller."""
        now = self._clock()
        with self._cond:
            if self.options.fixed or now - self._window_start < self.options.window:
                return self._limit
            samples, self._samples = self._samples, []
            waited, self._waited = self._waited, 0
            busy = self._inflight >= self._limit
            self._window_start = now
            if len(samples) < self.options.min_samples:
                if waited or busy:
                    # Calls so long that none finished this window while the slots are all
                    # taken: only more in flight can raise the throughput.
                    self._set(self._limit * 2 if self._slow_start else self._limit + max(1, self._limit // 4))
                return self._limit
            median = statistics.median(samples)
            log.debug("limit %d: %d calls, median %.3f s (base %s), waited %d, busy %s", self._limit, len(samples),
                      median, f"{self._base:.3f}" if self._base else "-", waited, busy)
            cut_at, self._cut_at = self._cut_at, None
            if cut_at is not None and median >= cut_at * 0.9:
                self._base, self._slow_start = median, True  # the cut did not help: not our queueing
            base = self._base = median if self._base is None else min(self._base, median)
            if median > base * self.options.shrink_above:
                self._slow_start = False
                self._cut_at = median
                self._set(self._limit * max(0.5, base / median))
            elif (waited or busy) and median <= base * self.options.grow_below:
                self._set(self._limit * 2 if self._slow_start else self._limit + max(1, self._limit // 4))
            return self._limit

    def _set(self, value: float) -> None:
        new = max(self.options.minimum, min(self.options.maximum, int(value)))
        if new > self._limit:
            self._cond.notify(new - self._limit)
        self._limit = new
