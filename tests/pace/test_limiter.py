"""The adaptive concurrency limit, driven by a fake clock: it must grow while more in
flight costs no latency, and shrink when calls start to queue (latency inflates)."""

from __future__ import annotations

import math
import random
import statistics
from pathlib import Path

from runner.taskq.concurrency import ConcurrencyController, ConcurrencyOptions, CpuMeter

FREE_CPU = lambda: (0.3, 0.4)  # noqa: E731 - a process using 0.3 cores on a machine 40% busy


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def window(limit: ConcurrencyController, clock: Clock, latency_of: callable, waiting: bool = True) -> int:  # type: ignore[valid-type]
    """One second of calls taking ``latency_of(limit.current)`` each, with more calls
    waiting for a thread (``waiting``) at the controller's look. With calls waiting every
    thread has one out, so ``limit.current`` / latency of them end in that second (Little's
    law); with none waiting, ``limit.current`` of them."""
    n = limit.current
    latency = latency_of(n)
    for _ in range(max(1, round(n / latency)) if waiting else n):
        limit.record(latency)
    clock.t += 1.0
    return limit.tick(waiting=waiting)


def test_grows_to_the_ceiling_while_latency_is_the_targets_own() -> None:
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=8, maximum=512), clock=clock, cpu=FREE_CPU)
    seen = [window(limit, clock, lambda n: 1.0) for _ in range(14)]
    assert seen[-1] == 512
    # Slow targets grow from the first window (slow start: doubling, the process using 0.3 of a
    # core), and each growth is judged before the next: a latency and a window later.
    assert seen[:6] == [16, 16, 32, 32, 64, 64]


def test_settles_where_the_cpu_saturates() -> None:
    """A process that can do 1,000 calls/s of CPU on 100 ms targets: beyond 100 in flight,
    each call also waits its turn, so latency grows with the limit."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=8, maximum=1024), clock=clock, cpu=FREE_CPU)

    def latency(n: int) -> float:
        return max(0.1, n / 1000)

    seen = [window(limit, clock, latency) for _ in range(40)]
    assert min(seen[-10:]) >= 80 and max(seen[-10:]) <= 200, seen


def test_fixed_never_moves() -> None:
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions.fixed_at(128), clock=clock, cpu=FREE_CPU)
    assert [window(limit, clock, lambda n: 0.001 * n) for _ in range(5)] == [128] * 5


def test_no_growth_while_nothing_waits_for_a_thread() -> None:
    """0 ms targets: deliveries are the bound, calls rarely wait for a thread. More threads
    would only fight for the GIL, however flat the latency."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=512), clock=clock, cpu=FREE_CPU)
    assert [window(limit, clock, lambda n: 0.005, waiting=False) for _ in range(10)] == [128] * 10


def test_waiting_in_a_minority_of_looks_is_a_burst_not_demand() -> None:
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=64, maximum=512), clock=clock, cpu=FREE_CPU)
    for _ in range(5):
        for waiting in (True, False, False):  # three looks in a window, one found calls waiting
            limit.tick(waiting=waiting)
        for _ in range(64):
            limit.record(0.01)
        clock.t += 1.0
        limit.tick(waiting=False)
    assert limit.current == 64


def test_slower_targets_reset_the_base_instead_of_starving_the_pool() -> None:
    """The mix changes from 100 ms to 1 s targets: one cut shows it was not our queueing."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=8, maximum=1024), clock=clock, cpu=FREE_CPU)
    seen = [window(limit, clock, lambda n: max(0.1 if clock.t < 10 else 1.0, n / 1000)) for _ in range(20)]
    assert seen[-1] == 1024, seen
    assert min(seen[10:]) >= 64, seen


def test_no_growth_on_a_busy_cpu_however_flat_the_latency() -> None:
    """The process at its GIL's bound, or (on fast targets) the machine's cores all taken:
    more threads would only queue, even when the latency does not show it."""
    for busy, latency in (((0.95, 0.5), 1.0), ((0.5, 0.9), 0.01), ((0.95, None), 1.0), ((0.95, None), 0.01)):
        clock = Clock()
        limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=512), clock=clock, cpu=lambda b=busy: b)
        assert [window(limit, clock, lambda n, lat=latency: lat) for _ in range(5)] == [128] * 5, (busy, latency)


def test_a_busy_machine_does_not_hold_back_slow_targets() -> None:
    """1 s targets on a machine a neighbour keeps busy: this process has CPU to spare, and
    congestion of its own would show in the median; more in flight is more throughput."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=lambda: (0.3, 0.95))
    assert [window(limit, clock, lambda n: 1.0) for _ in range(5)][-1] == 1024


def test_the_cpu_meter_reads_the_machine_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n")
    meter = CpuMeter(str(stat))
    stat.write_text("cpu  160 0 140 760 140 0 0 0 0 0\n")  # +100 busy, +100 idle and iowait
    own, machine = meter.busy()
    assert machine == 0.5 and own >= 0.0
    stat.write_text("garbage\n")
    assert meter.busy()[1] is None  # unreadable: the process's own CPU decides alone


def test_the_first_window_with_calls_only_measures() -> None:
    """Its calls carry the start's costs and its CPU the quiet before the load: growing
    then took 100 ms targets to 256 a process where 128 is the best."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=512), clock=clock, cpu=FREE_CPU)
    clock.t += 1.0
    assert limit.tick(waiting=False) == 128  # idle: no calls yet, nothing measured
    assert window(limit, clock, lambda n: 0.1) == 128  # the first with calls
    assert window(limit, clock, lambda n: 0.1) == 256


# ---------------------------------------------------------------- issue 25: the start and the mix

IDLE_CPU = lambda: (0.1, 0.4)  # noqa: E731 - the calls all wait on the network: a tenth of a core


def test_slow_targets_grow_from_the_first_window_four_times_while_the_cpu_idles() -> None:
    """1 s targets: in the first half second no call is over and more wait for a thread.
    Only more in flight raises the throughput, so it does not wait a window to measure, and
    with the process at a tenth of a core it grows four times, not two."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=IDLE_CPU)
    seen = []
    for _ in range(3):
        clock.t += 0.6
        seen.append(limit.tick(waiting=True))  # nothing recorded: every call still waits on its target
    assert seen == [512, 1024, 1024]


def test_the_first_window_starts_with_the_first_call() -> None:
    """Idle looks before any call are no window: the first one is the load's half second, so
    its CPU is not the quiet before the load."""
    clock = Clock()
    readings = []

    def cpu() -> tuple[float, float]:
        readings.append(clock.t)
        return 0.1, 0.4

    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=cpu)
    for _ in range(20):  # 10 s idle
        clock.t += 0.5
        assert limit.tick(waiting=False) == 128
    limit.record(0.3)  # one call over already: the windows decide, not the ramp (below)
    assert limit.tick(waiting=True) == 128  # the first call: its window starts now (t = 10)
    clock.t += 0.4
    assert limit.tick(waiting=True) == 128  # 0.4 s into it: no decision yet
    readings.clear()
    clock.t += 0.2
    assert limit.tick(waiting=True) == 512  # 0.6 s: decided, on the CPU read since t = 10
    assert readings == [10.6]


def lognormal_window(limit: ConcurrencyController, clock: Clock, rng: random.Random, *, slower_past: int = 0,
                     waiting: bool = True) -> int:
    """Half a second of calls at the mix's latencies: log-normal, median 150 ms and p99 2 s,
    1% hanging until a 10 s deadline; as many as ``limit.current`` in flight finish in that
    time (Little's law). Past ``slower_past`` in flight (if given) every call is slower in
    proportion: congestion of our own."""
    n = limit.current
    sigma = math.log(2 / 0.15) / 2.326
    stretch = max(1.0, n / slower_past) if slower_past else 1.0
    for _ in range(max(1, int(n * 0.5 / (0.3 * stretch)))):
        limit.record(10.0 if rng.random() < 0.01 else 0.15 * stretch * math.exp(rng.gauss(0, sigma)))
    clock.t += 0.5
    return limit.tick(waiting=waiting)


def test_the_mix_of_latencies_does_not_read_as_congestion() -> None:
    """Half-second medians of log-normal latencies swing by half; the lowest of them was the
    base and ordinary windows then read as congestion: the default shrank to 37 a process.
    On a machine a neighbour keeps busy (95%), this process at 0.3 of a core, it grows to
    its ceiling and stays there."""
    for seed in range(5):
        clock = Clock()
        rng = random.Random(seed)
        limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock,
                                      cpu=lambda: (0.3, 0.95))
        seen = [lognormal_window(limit, clock, rng) for _ in range(60)]
        assert min(seen) >= 128 and seen[-20:] == [1024] * 20, (seed, seen)


def test_congestion_still_shows_through_the_mix() -> None:
    """The same mix, but past 256 in flight every call is slower in proportion (the process's
    own queue): the concurrency settles near 256, not at the ceiling."""
    for seed in range(5):
        clock = Clock()
        rng = random.Random(seed)
        limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=FREE_CPU)
        seen = [lognormal_window(limit, clock, rng, slower_past=256) for _ in range(80)]
        assert statistics.median(seen[-40:]) <= 512 and min(seen[-40:]) >= 64, (seed, seen)


def test_the_window_after_a_growth_does_not_lower_the_base() -> None:
    """After a growth the window's calls are mostly the new ones that ended within it: the
    fastest of a spread. Taken as the base, the next ordinary window read as congestion."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=FREE_CPU)
    assert window(limit, clock, lambda n: 0.2) == 128  # the first window: measures
    assert window(limit, clock, lambda n: 0.2) == 256  # base 0.2; grows
    assert window(limit, clock, lambda n: 0.1) == 256  # right after: the new calls' fastest (judging the growth)
    # Ordinary again (0.2, not past 1.6 x 0.1 only because 0.1 did not become the base).
    assert window(limit, clock, lambda n: 0.2, waiting=False) == 256


def test_a_draining_batch_does_not_cut() -> None:
    """The queue empty and the process nearly idle, the calls that end are the batch's
    slowest: no queue of ours, no cut."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=256, maximum=1024), clock=clock, cpu=FREE_CPU)
    window(limit, clock, lambda n: 0.2)
    window(limit, clock, lambda n: 0.2, waiting=False)  # base 0.2, nothing waits: stays
    assert [window(limit, clock, lambda n: 2.0, waiting=False) for _ in range(3)] == [256] * 3
    # With calls waiting, the same latency is a queue: it cuts.
    assert window(limit, clock, lambda n: 2.0) == 128


def test_targets_slow_at_their_fastest_grow_past_half_a_core_on_a_busy_machine() -> None:
    """0.5 s targets at 256 a process: over half a core, the machine 95% busy (our database
    and target among it). Every call takes 0.5 s at the least: the targets', not a queue of
    ours, so it grows. 0 ms targets in a crowded process, or the mix (its fastest tenth in
    under 40 ms), at the same CPU do not."""
    busy = lambda: (0.6, 0.95)  # noqa: E731
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=256, maximum=1024), clock=clock, cpu=busy)
    assert [window(limit, clock, lambda n: 0.5) for _ in range(3)] == [512, 512, 1024]  # from the first window
    spread = [0.3 * (i + 1) / 256 for i in range(256)]  # a GIL queue: 1 ms to 0.3 s, mean 0.15 s
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=busy)
    for _ in range(5):
        for ran in spread:
            limit.record(ran)
        clock.t += 0.5
        assert limit.tick(waiting=True) == 128
    clock = Clock()
    rng = random.Random(1)
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=busy)
    assert [lognormal_window(limit, clock, rng) for _ in range(5)] == [128] * 5


# ---------------------------------------------------------------- issue 25: the ramp before the first call is over


def test_with_no_call_over_it_doubles_each_time_their_time_out_doubles() -> None:
    """1 s targets: nothing is over in the first second. A call out for 0.25 s takes 0.25 s
    at least (slow targets), so it grows then (twice), at 0.5 s (twice: four times took 0.5 s
    targets to 1,024 a process where 512 is the best), at 1 s (four times): not at the end of
    a first window and then of a second one (256 a process, then 1,024, against fixed 1,024's
    2,048 at once). The machine's share does not hold it (95% busy), the process's does."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=4096), clock=clock, cpu=lambda: (0.3, 0.95))
    seen = []
    for _ in range(9):  # a look every 0.125 s, as the pool's
        seen.append(limit.tick(waiting=True))
        clock.t += 0.125
    assert seen == [128, 128, 256, 256, 512, 512, 512, 512, 2048]  # twice at 0.25 and 0.5 s, then four times
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=IDLE_CPU)
    seen = []
    for _ in range(6):
        seen.append(limit.tick(waiting=True))
        clock.t += 0.125
    assert seen == [128, 128, 512, 512, 1024, 1024]  # four times while the process idles
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=lambda: (0.95, 0.95))
    for _ in range(12):  # a process at a whole core: not the targets, its own queue
        assert limit.tick(waiting=True) == 128
        clock.t += 0.125


def test_calls_over_before_a_quarter_second_leave_it_to_the_windows() -> None:
    """0 and 100 ms targets: calls are over before the ramp's first step; the first window
    then only measures, as before the ramp (growing at the start took 100 ms targets to 256
    a process where 128 is the best)."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=FREE_CPU)
    seen = []
    for _ in range(8):
        seen.append(limit.tick(waiting=True))
        clock.t += 0.125
        for _ in range(160):  # 128 in flight, 0.1 s each: 1,280 a second
            limit.record(0.1)
    assert seen == [128] * 8
    assert window(limit, clock, lambda n: 0.1) == 256  # the next window decides, as before


def test_the_ramp_waits_for_calls_waiting() -> None:
    """No call over and none waiting for a thread: a few slow calls, no demand for more."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=IDLE_CPU)
    assert limit.tick(waiting=True) == 128  # the first call
    for _ in range(8):
        clock.t += 0.125
        assert limit.tick(waiting=False) == 128
    assert limit.tick(waiting=True) == 512  # demand again, still none over


def test_little_s_law_counts_the_calls_still_out() -> None:
    """The mix's first windows: the calls that finish are its fast ones (mean 0.15 s), the
    slow ones still out. 128 in flight and 200 over in half a second is 0.32 s in flight on
    average: slow targets, so a machine a neighbour keeps 95% busy does not hold it."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=lambda: (0.3, 0.95))
    limit.record(0.1)
    limit.tick(waiting=True)
    seen = []
    for _ in range(4):
        for _ in range(200 * limit.current // 128):  # twice the threads, twice the calls through
            limit.record(0.15)
        clock.t += 0.5
        seen.append(limit.tick(waiting=True))
    # The growth's new calls still out count as well; each growth is judged before the next.
    assert seen == [256, 256, 256, 512], seen
    # The same calls with nothing waiting for a thread: Little's law does not hold (fewer in
    # flight than threads), and the finished calls' 0.15 s are all it has: held.
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=lambda: (0.3, 0.95))
    limit.record(0.1)
    limit.tick(waiting=False)
    for _ in range(3):
        for _ in range(200):
            limit.record(0.15)
        clock.t += 0.5
        assert limit.tick(waiting=False) == 128


def test_calls_that_defer_themselves_count_as_through() -> None:
    """A limited host's backlog: most calls defer themselves (a moment each) and are no
    samples. Counted as through, they keep Little's law from reading their thread's moment
    as a slow call; and a start of only such calls is no reason to ramp."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=lambda: (0.3, 0.95))
    for _ in range(12):
        for _ in range(100):
            limit.deferred()
        for _ in range(20):
            limit.record(0.02)
        clock.t += 0.125
        assert limit.tick(waiting=True) == 128


# ---------------------------------------------------------------- issue 25: growth must pay


def through_window(limit: ConcurrencyController, clock: Clock, through: callable, waiting: bool = True) -> int:  # type: ignore[valid-type]
    """Half a second of 0.5 s calls, ``through(limit.current)`` of them over: the latency the
    targets' own whatever the concurrency, as on 0.5 s targets on a full machine."""
    for _ in range(through(limit.current)):
        limit.record(0.5)
    clock.t += 0.5
    return limit.tick(waiting=waiting)


def test_a_growth_that_adds_no_calls_through_goes_back_and_stays_below() -> None:
    """0.5 s targets on a full machine: past 512 in flight the calls through stop rising while
    their latency stays the targets' own (the medians within a tenth of 0.5 s at 1,024, as
    measured). The growth to 1,024 does not pay: back to 512, and no growth past it again."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=256, maximum=1024), clock=clock, cpu=FREE_CPU)
    seen = [through_window(limit, clock, lambda n: min(n, 512)) for _ in range(16)]
    assert 1024 in seen[:6], seen  # it tried
    assert seen[-8:] == [512] * 8, seen


def test_a_growth_that_pays_stays() -> None:
    """The same targets where every thread adds its calls: each doubling doubles the calls
    through, and it grows to the maximum."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=256, maximum=1024), clock=clock, cpu=FREE_CPU)
    seen = [through_window(limit, clock, lambda n: n) for _ in range(10)]
    assert seen[-3:] == [1024] * 3, seen


def test_a_draining_batch_judges_no_growth() -> None:
    """After the growth the batch runs out (nothing waits for a thread): fewer calls through
    is the batch's end, not the growth's failure, and the concurrency stays."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=256, maximum=1024), clock=clock, cpu=FREE_CPU)
    through_window(limit, clock, lambda n: n)  # the first window: grows (slow targets)
    assert limit.current == 512
    seen = [through_window(limit, clock, lambda n: 100, waiting=False) for _ in range(4)]
    assert seen == [512] * 4, seen


def test_after_the_ramp_the_first_window_only_measures() -> None:
    """0.5 s targets: the ramp took 128 to 256 and 512 before a call was over. The first
    window's calls through are the ramp's transient, no baseline to judge a growth by (from
    it, 0.5 s targets went to 1,024 a process and stayed): the next window grows, judged."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=128, maximum=1024), clock=clock, cpu=FREE_CPU)
    for _ in range(5):  # a look every 0.125 s: none over until 0.5 s
        limit.tick(waiting=True)
        clock.t += 0.125
    assert limit.current == 512
    assert through_window(limit, clock, lambda n: n) == 512  # the first window: measures
    assert through_window(limit, clock, lambda n: n) == 1024  # the next: grows


def test_a_stalled_window_does_not_judge_a_growth() -> None:
    """A thousand threads woken at once: the controller's own thread waited 6 s for the GIL,
    30 calls a second went through, and a growth that paid was undone on that figure (1 s
    targets, 1,024 back to 512). A window that long, or one whose calls took past
    ``shrink_above`` times the base, postpones the judgement to the next ordinary one."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=256, maximum=1024), clock=clock, cpu=FREE_CPU)
    assert through_window(limit, clock, lambda n: n) == 512  # the first window: grows
    for _ in range(30):  # a window six seconds long
        limit.record(0.5)
    clock.t += 6.0
    assert limit.tick(waiting=True) == 512
    assert [through_window(limit, clock, lambda n: n) for _ in range(4)][-1] == 1024  # judged, paid, grew on


# ---------------------------------------------------------------- issue 25: the GIL's switch interval


def test_the_switch_interval_grows_with_the_threads_past_400() -> None:
    """A thread waiting for the GIL wakes once an interval: a thousand of them at 20 ms kept
    half the CPU in the kernel. Up to 400 threads a wait stays under 20 ms (a check's timings);
    beyond, 50 us a thread, at most 0.1 s."""
    from runner.taskq.pool import switch_interval

    assert [switch_interval(n) for n in (8, 128, 400)] == [0.02, 0.02, 0.02]
    assert math.isclose(switch_interval(1024), 0.0512)
    assert switch_interval(4096) == 0.1


def test_one_poor_window_after_a_growth_does_not_undo_it() -> None:
    """1 s targets: the window a latency after a growth met the herd of the new calls'
    answers (348 calls/s against 417 before) and a growth that paid was undone. The best
    window of the two watched judges it."""
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=256, maximum=1024), clock=clock, cpu=FREE_CPU)
    assert through_window(limit, clock, lambda n: n) == 512  # the first window: grows
    assert through_window(limit, clock, lambda n: n) == 512  # the growth's worth (watched)
    assert through_window(limit, clock, lambda n: n // 3) == 512  # the herd: a third of the calls through
    assert through_window(limit, clock, lambda n: n) == 1024  # judged by the best: paid, and it grows on
