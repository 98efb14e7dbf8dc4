"""Adaptive concurrency: how many calls a worker process runs at once, found as it goes.

(Not a "limit": in urltester that word is a host's, ``runner limits``; see runner.jobs.pacing.)

A fixed thread count fits one latency. Checks mostly wait on the network, so on 1 s
targets a process needs hundreds of calls in flight to use its core, while on 0 ms
targets the same hundreds only fight for the GIL. The concurrency is therefore set by a delay-based
congestion controller, TCP Vegas-style (and like Netflix's concurrency-limits "gradient"):

* every ``window`` seconds (0.5) it takes the **median** time a call ran in that window
  (the median, so 1% of checks hanging until their deadline does not steer it), with the
  band its sampling noise puts it in (two standard errors each way, from the spread of the
  log-latencies): narrow on targets of one latency, wide on a mix of them;
* ``base`` is the lowest upper bound of that band seen: the latency of the targets
  themselves, without queueing in this process. (The lowest median was the base before
  issue 25: on log-normal latencies the half-second medians swing by half, and ordinary
  windows then read as congestion: the default shrank to 37 a process, 0.61 of the best.)
* while the concurrency is what holds the calls back (in at least ``full_at`` of the window's
  looks, calls were waiting for a thread), the CPU is free (this process below
  ``own_busy`` of a core, the GIL's bound, and the machine below ``machine_busy``: see
  :class:`CpuMeter`) and the band's lower bound is within ``grow_below`` of ``base`` (more in
  flight costs no latency), the concurrency grows: doubling until the first sign of
  congestion (slow start; four times while the process uses under a quarter of
  ``own_busy``: its calls all wait on the network), then by a quarter. A moment's burst is
  not demand, and a busy CPU is no place for more threads: on 0 ms targets the latency
  hardly moves with the thread count (the calls queue in the target, the database, the
  other process), so latency alone took the concurrency to 512, at 0.86 of fixed 128's
  rate. The machine's share gates only targets whose calls take ``cpu_bound_below`` (0.25 s)
  or more on average, while the process uses under half a core: on slower ones a busy
  neighbour held 1 s targets at 128 a process, while congestion of our own shows in the median;
* when the band's lower bound passes ``shrink_above`` × ``base`` (calls now queue for the GIL
  or the core), the concurrency shrinks by the gradient ``base / median`` (at most to half);
* the first window starts with the first call (idle looks before it are no window: its CPU
  would be the quiet before the load). Its calls carry the start's costs (new connections,
  the first TLS handshakes), so it sets no ``base``, and it grows only on slow targets, where
  its calls outlast it: growing then on 100 ms targets took them to 256 threads a process
  where 128 is the best (0.91 of fixed 128), while waiting a window to measure 1 s targets,
  then doubling, kept a 5,000-URL run at 128 a process for most of its 6 to 8 s (issue 25);
* before any call is over, the clock decides (:meth:`_ramp`): with none over after
  ``ramp_after`` (0.25 s) the targets are slow, and it grows twice, twice again at 0.5 s,
  then four times each time the calls' time out doubles (1, 2 s); 1 s targets are at 1,024
  a process after a second, where the windows took a second and more;
* growth must pay (:meth:`_paid`): in the best window of the two after a latency from a
  growth, the calls through must have risen by a quarter of what the added threads would
  give, or the concurrency goes back and stays below that until the targets change. Latency
  shows a queue in this process only: on 0.5 s targets with the machine full, 1,024 a process
  kept the targets' latency and added no throughput, only CPU per check;
* "slow" for the machine's gate is the mean time in flight: the finished calls' mean or,
  while calls wait for a thread, Little's law (threads × window / calls through), whichever
  is larger: it counts the calls still out, which the finished ones miss on the mix;
* if the next window's median is no better after such a cut, the latency was the
  targets' own (the mix changed), not ours: ``base`` is reset to it and slow start
  resumes. (A base that followed recent medians instead would drift up with the queueing
  it is meant to detect, and the concurrency with it.)

``--concurrency N`` fixes it (``fixed``); ``--max-concurrency`` bounds it. The pool
runs exactly :attr:`current` threads: it starts more when the concurrency grows, and threads
retire after their call when it shrinks. (It used to start ``maximum`` threads and park
the surplus on a semaphore: every call's acquire and release then took one Condition that
hundreds of threads queued on, and the default ran 0 ms targets at 0.7 of fixed 128.)
Nothing here takes a lock: :meth:`record` appends to a list (atomic), and one thread, the
pool's controller, calls :meth:`tick`. :attr:`current` is what the heartbeat and metrics
read.

Time is injectable (``clock=``) so tests drive the controller without sleeping.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("urltester.concurrency")

DEFAULT_MIN = 8
DEFAULT_MAX = 1024  # 2 processes x 512 held 1 s targets to ~1,000/s with the CPU 40% idle (issue 25)
DEFAULT_START = 128  # the old fixed default: never worse at the start


@dataclass(frozen=True)
class ConcurrencyOptions:
    """How the concurrency moves; ``fixed`` pins it at ``start``."""

    start: int = DEFAULT_START
    minimum: int = DEFAULT_MIN
    maximum: int = DEFAULT_MAX
    fixed: bool = False
    window: float = 0.5  # seconds between decisions
    grow_below: float = 1.25
    shrink_above: float = 1.6
    min_samples: int = 8  # completions a window needs before it decides anything
    full_at: float = 0.5  # share of a window's looks that found calls waiting: the concurrency is full
    own_busy: float = 0.9  # this process's CPU, in cores, at which it is saturated (one GIL)
    machine_busy: float = 0.85  # share of the machine's CPU time busy at which it is saturated
    cpu_bound_below: float = 0.25  # seconds: targets faster than this are where the machine's CPU gates growth
    ramp_after: float = 0.25  # seconds of calls out with none over: slow targets, grow before a window ends
    judge_within: float = 10.0  # seconds past its due time that stalled windows may postpone judging a growth

    @classmethod
    def fixed_at(cls, n: int) -> ConcurrencyOptions:
        return cls(start=n, minimum=n, maximum=n, fixed=True)


class CpuMeter:
    """How busy the CPU was since the last look: this process (cores) and, on Linux, the
    whole machine (share of ``/proc/stat``'s time not idle). Both matter: a process
    cannot use more than about one core (the GIL), and on a machine whose cores are all
    taken (its other processes, the database, a neighbour) more threads only queue."""

    def __init__(self, stat: str = "/proc/stat") -> None:
        self._stat = stat
        self._last = self._read()

    def _machine(self) -> tuple[int, int] | None:
        try:
            with open(self._stat, encoding="ascii") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 4:
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def _read(self) -> tuple[float, float, tuple[int, int] | None]:
        return time.monotonic(), time.process_time(), self._machine()

    def busy(self) -> tuple[float, float | None]:
        """(this process's cores, the machine's busy share or None) since the last call."""
        wall0, own0, machine0 = self._last
        self._last = wall1, own1, machine1 = self._read()
        own = (own1 - own0) / max(wall1 - wall0, 1e-9)
        if machine0 is None or machine1 is None or machine1[1] <= machine0[1]:
            return own, None
        return own, (machine1[0] - machine0[0]) / (machine1[1] - machine0[1])


class ConcurrencyController:
    """The number of calls to run at once, moved between ``minimum`` and ``maximum``."""

    def __init__(self, options: ConcurrencyOptions, *, clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], tuple[float, float | None]] | None = None) -> None:
        """``cpu``: :meth:`CpuMeter.busy` (the default) or a stand-in for tests."""
        self.options = options
        self._clock = clock
        self._cpu = cpu or CpuMeter().busy
        self._current = max(options.minimum, min(options.maximum, options.start))
        self._samples: list[float] = []
        self._passes: list[None] = []  # calls that deferred themselves this window
        self._looks = 0  # ticks this window
        self._waiting = 0  # ticks this window that found calls waiting for a thread
        self._base: float | None = None
        self._cut_at: float | None = None  # the median that made the last cut
        self._window_start = clock()
        self._slow_start = not options.fixed
        self._busy = False  # a call has been seen: the first window runs from then
        self._began = 0.0  # when it was seen (the look before it: the calls began after that)
        self._over = False  # a call has finished since
        self._ramp_due = options.ramp_after  # seconds after _began of the next ramp step
        self._ramped = False  # the ramp grew: the first window is no baseline to judge a growth by
        self._warm = False  # that first window is over
        self._grew = False  # the last decision was to grow
        self._trial: _Trial | None = None  # the last growth, until it is judged
        self._ceiling = options.maximum  # below the growth that did not pay

    @property
    def current(self) -> int:
        """Calls this process lets run at once now."""
        return self._current

    @property
    def adaptive(self) -> bool:
        return not self.options.fixed

    def record(self, ran: float) -> None:
        """A call is over; ``ran`` is how long it took (seconds). Any thread, no lock."""
        if len(self._samples) < 4096:
            self._samples.append(ran)

    def deferred(self) -> None:
        """A call deferred itself (a host's limit): it held a thread a moment and is no
        sample of the targets' latency, but it counts among the calls through (Little's law)."""
        if len(self._passes) < 4096:
            self._passes.append(None)

    def tick(self, waiting: bool) -> int:
        """Look (``waiting``: calls are waiting for a thread now) and decide, if a window
        has passed; returns the concurrency. Called by the pool's controller, a few times a window."""
        now = self._clock()
        if self.options.fixed:
            return self._current
        if not self._busy:
            if not waiting and not self._samples:
                # Idle: the first window starts with the first call, so that its CPU is the
                # load's and not the quiet before it (which read as room to grow).
                self._window_start = now
                self._cpu()
                return self._current
            self._busy, self._began = True, self._window_start
        self._looks += 1
        self._waiting += bool(waiting)
        if not self._over:
            if not self._samples and not self._passes:
                return self._ramp(now, waiting)
            self._over = True  # the first calls are through: the windows decide from here
        elapsed = now - self._window_start
        if elapsed < self.options.window:
            return self._current
        samples, self._samples = self._samples, []
        passes, self._passes = len(self._passes), []
        own, machine = self._cpu()
        full = self._waiting >= self._looks * self.options.full_at
        self._looks = self._waiting = 0
        self._window_start = now
        first, self._warm = not self._warm, True
        few = len(samples) < self.options.min_samples
        rate = (len(samples) + passes) / elapsed
        # A window twice as long as it should be (this thread starved: a thousand threads
        # woken at once fought for the GIL, 60% of the CPU in the kernel for seconds), or
        # one whose calls took more than ``shrink_above`` times the base: its calls through
        # are the stall's, not the concurrency's, and no growth is judged by them.
        stalled = elapsed > 2 * self.options.window or (
            not few and self._base is not None and statistics.median(samples) > self._base * self.options.shrink_above)
        if self._paid(now, rate, full, stalled) is False:
            return self._current
        # How long a call waits, on average (the mean: what a thread's share of the CPU
        # follows). While calls wait for a thread, every thread has one out: Little's law
        # then gives the mean time in flight, the calls in flight times the window per call
        # finished, and it counts the calls still out. The finished calls' own mean does
        # not: in the mix's first windows, and in the window after a growth, they are the
        # fast ones (the slow ones and the 1% hanging are still out), a mean of about 0.2 s
        # where the mix's is 0.3 s or more, and a machine past 85% busy then held the mix at
        # 128 a process (0.71 of the best fixed; issue 25). The larger of the two.
        little = self._current * elapsed / max(1, len(samples) + passes)
        mean = little if few else max(statistics.fmean(samples), little) if full else statistics.fmean(samples)
        # The machine's CPU gates growth only on fast targets: there the calls' queues form
        # outside this process (the target, the database, the other process) where the median
        # does not show them. On slow ones a check is ~1 ms of CPU in a second of waiting, and
        # a busy machine (a neighbour's load) only held 1 s targets at 128 a process, a quarter
        # of what more threads gave (issue 25); congestion there shows in the median.
        # "Slow" also asks that this process use under half a core: a call's measured time
        # includes its wait for the GIL (128 threads at 450 calls/s: 0.28 s on 0 ms targets),
        # so a latency alone cannot tell slow targets from a crowded process. The mean, not
        # the median: a mix of log-normal latencies around 150 ms (mean 0.3 s) is slow.
        # Or every call slow, the fastest tenth too (``fastest``): a crowded process spreads its
        # calls' times from near nothing up, while 0.5 s targets take 0.5 s at the least; such
        # targets grow from the first window, past half a core and on a busy machine too
        # (held at 256 a process, 0.5 s targets checked at 0.87 of fixed 512's rate): whether
        # more threads still add throughput there, only trying tells (:meth:`_paid`).
        fastest = mean if few else sorted(samples)[len(samples) // 10]
        slow = own < self.options.own_busy and (fastest >= self.options.cpu_bound_below or (
            mean >= self.options.cpu_bound_below and own < self.options.own_busy / 2))
        cpu_free = own < self.options.own_busy and (machine is None or machine < self.options.machine_busy or slow)
        grow = self._current + max(1, self._current // 4)
        if self._slow_start:
            # Slow start: doubling, or four times while this process uses under a quarter
            # of what it can (its calls nearly all wait on the network): from 128 a process,
            # 1 s targets need 512 or more, and two doublings cost a run of 5,000 URLs a
            # quarter of its time.
            grow = self._current * (4 if own * 4 < self.options.own_busy else 2)
        if first or few:
            # The first window's calls carry the start's costs (new connections, the first
            # TLS handshakes): it sets no base, and grows only on slow targets, where more
            # in flight is the one way to more throughput (growing then on 100 ms targets
            # took them to 256 a process where 128 is the best). With hardly any call over,
            # the calls outlast the window: slow. Not after the ramp, which was the slow start
            # before this window: its calls through are the ramp's transient, too few to judge a
            # growth by (0.5 s targets went to 1,024 a process from this window, and stayed).
            before = self._current
            if full and cpu_free and slow and not self._ramped:
                self._grow(grow, now, rate, mean)
            log.debug("concurrency %d -> %d: %s window, %d calls, mean %.3f s, p10 %.3f s, "
                      "full %s, CPU %.2f cores, machine %s", before, self._current, "first" if first else "a thin",
                      len(samples), mean, fastest, full, own, "-" if machine is None else f"{machine:.0%}")
            return self._current
        median, low, high = _median_band(samples)
        log.debug("concurrency %d: %d calls, median %.3f s [%.3f, %.3f] (base %s), mean %.3f s, p10 %.3f s, "
                  "full %s, CPU %.2f cores, machine %s",
                  self._current, len(samples), median, low, high, f"{self._base:.3f}" if self._base else "-",
                  mean, fastest, full, own, "-" if machine is None else f"{machine:.0%}")
        cut_at, self._cut_at = self._cut_at, None
        grew, self._grew = self._grew, False
        if cut_at is not None and median >= cut_at * 0.9:
            # The cut did not help: not our queueing but the targets' (the mix changed).
            self._base, self._slow_start, self._ceiling = high, True, self.options.maximum
        if self._base is None or not grew:
            # Not lowered by the window after a growth: its calls are mostly the new ones
            # that finished within it, the fastest of a spread of latencies (on the mix: a
            # base a quarter too low, and the next ordinary windows read as congestion).
            self._base = high if self._base is None else min(self._base, high)
        base = self._base
        # Nothing waiting for a thread and a process using under half a core: no queue of our
        # own, and the calls that end are the batch's slowest, still out (its tail as it drains).
        tail = not full and own < self.options.own_busy / 2
        if low > base * self.options.shrink_above and not tail:
            self._slow_start, self._trial = False, None
            self._cut_at = median
            self._set(self._current * max(0.5, base / median))
        elif full and cpu_free and low <= base * self.options.grow_below:
            self._grow(grow, now, rate, median)
        return self._current

    def _grow(self, value: int, now: float, rate: float, latency: float) -> None:
        """Grow to ``value``, below the ceiling and with no growth still being judged, and
        judge it by the windows from a latency after it (its new calls over) to two windows
        later (a latency: at most four windows)."""
        before = self._current
        if self._trial is not None or before >= self._ceiling:
            return
        self._set(min(value, self._ceiling))
        if self._current > before:
            # A thin window's latency is Little's law on a few calls: at most 2 s is awaited.
            latency = min(latency, 4 * self.options.window)
            self._trial = _Trial(before, rate, now + latency, now + latency + 2 * self.options.window)

    def _paid(self, now: float, rate: float, full: bool, stalled: bool) -> bool | None:
        """Growth must pay: judge the last growth, once due, by the calls through in the best
        ordinary window after it.

        Latency shows a queue in this process, not one elsewhere. On 0.5 s targets both
        processes went to 1,024 with their medians within a tenth of the targets' own, while
        the machine was full: more threads there only take CPU from the other process, the
        database and the target, at more CPU per check (fixed 1,024 checks at 0.87 of fixed
        512's rate). So a growth stays only if the calls through rose by at least a quarter
        of what the threads added would give if each did as well as the ones before (a
        doubling: a quarter more): TCP BBR's "full pipe" test, a quarter more delivered each
        round or the pipe is full. If not, the concurrency goes back and stays below that
        (the ceiling) until the targets change. The best of the windows in the two windows'
        time from a latency after the growth, as BBR waits three rounds: judged on the one
        window a latency and a window after it, a growth of 1 s targets that paid was undone
        when that window met the herd of the new calls' answers (348 calls/s against 417
        before). Windows in which nothing waits for a thread (the batch drains) or that
        stalled count for nothing; with none that counts by the due time, a stall postpones
        the judgement (up to ``judge_within`` seconds) and a draining batch keeps the growth.
        False: it went back; None: nothing judged."""
        trial = self._trial
        if trial is None:
            return None
        if now >= trial.watch_from and full and not stalled:
            trial.best = max(trial.best, rate)
        if now < trial.judge_at:
            return None
        if not trial.best and full and now < trial.judge_at + self.options.judge_within:
            return None  # stalled windows only: wait for an ordinary one
        self._trial = None
        if not trial.best or self._current <= trial.before:
            return None  # nothing to judge by, or a cut since: the growth stays as it is
        needed = trial.rate * (1 + (self._current / trial.before - 1) / 4)
        if trial.best >= needed:
            return True
        log.debug("concurrency %d -> %d: growth did not pay: %.0f calls/s at best, %.0f before at %d",
                  self._current, trial.before, trial.best, trial.rate, trial.before)
        self._slow_start = False
        self._ceiling = trial.before
        self._set(trial.before)
        return False

    def _ramp(self, now: float, waiting: bool) -> int:
        """Before the first call is over: slow start by the clock.

        A call that has been out ``t`` seconds takes ``t`` at least, so with none over after
        ``ramp_after`` (0.25 s: the machine's CPU gates targets faster than that) the targets
        are slow, and more in flight is the one way to more throughput. Grow then, and again
        each time that time doubles (0.25, 0.5, 1, 2 s after the first call): TCP's slow start
        doubles once a round trip, and a round trip here is at least the time since the
        calls began. Twice at 0.25 s (a loaded start can take that long on fast targets: the
        first calls carry the connections and 128 threads starting at once) and at 0.5 s
        (four times there took 0.5 s targets to 1,024 a process where 512 is the best), four
        times from 1 s, or whenever the process idles. On 1 s targets a window's decision came only at 0.5 s, then 1 s,
        while nothing finishes in the first second anyway: the default gave that second away
        (256 a process, then 1,024, against fixed 1,024's 2,048 at once; 0.73 of it, issue 25).
        On 0 and 100 ms targets calls are over before 0.25 s, and the windows decide as before.
        """
        if not waiting or now - self._began < self._ramp_due:
            return self._current
        out = now - self._began
        self._ramp_due *= 2
        own, machine = self._cpu()
        before = self._current
        if own < self.options.own_busy:  # slow targets: the machine's share does not gate them
            slow = out >= 2 * self.options.window or own * 4 < self.options.own_busy
            self._set(self._current * (4 if slow else 2))
            self._ramped = True
        log.debug("concurrency %d -> %d: no call over after %.2f s, CPU %.2f cores, machine %s",
                  before, self._current, out, own, "-" if machine is None else f"{machine:.0%}")
        self._window_start, self._looks, self._waiting = now, 0, 0  # the next window starts here
        return self._current

    def _set(self, value: float) -> None:
        before, self._current = self._current, max(self.options.minimum, min(self.options.maximum, int(value)))
        self._grew = self._current > before


@dataclass
class _Trial:
    """A growth from ``before``, when the calls through were ``rate`` a second; ``best`` is
    the most a second in the windows from ``watch_from``; judged at ``judge_at``."""

    before: int
    rate: float
    watch_from: float
    judge_at: float
    best: float = 0.0


def _median_band(samples: list[float]) -> tuple[float, float, float]:
    """The window's median and the band its sampling noise puts it in (about two standard
    errors each way, from the spread of the log-latencies: their interquartile range).

    Targets of one latency give a narrow band, and the controller compares medians as before.
    A mix of log-normal latencies gives a wide one: its half-second medians of a few dozen
    calls swing by half, the lowest of them became ``base`` and ordinary windows then read as
    congestion (the default shrank to 37 a process, 0.61 of the best fixed; issue 25). So
    ``base`` is the lowest upper bound, and a window is congested only when its lower bound is
    past ``shrink_above`` × ``base``."""
    logs = sorted(math.log(max(s, 1e-6)) for s in samples)
    n = len(logs)
    median = math.exp(statistics.median(logs))
    sigma = (logs[(3 * n) // 4] - logs[n // 4]) / 1.349  # robust: 1% hanging calls do not widen it
    noise = math.exp(2 * 1.2533 * sigma / math.sqrt(n))  # the median's standard error is 1.2533 sigma / sqrt(n)
    return median, median / noise, median * noise
