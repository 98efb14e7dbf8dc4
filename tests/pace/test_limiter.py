"""The adaptive concurrency limit, driven by a fake clock: it must grow while more in
flight costs no latency, and shrink when calls start to queue (latency inflates)."""

from __future__ import annotations

from pathlib import Path

from runner.taskq.concurrency import ConcurrencyController, ConcurrencyOptions, CpuMeter

FREE_CPU = lambda: (0.3, 0.4)  # noqa: E731 - a process using 0.3 cores on a machine 40% busy


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def window(limit: ConcurrencyController, clock: Clock, latency_of: callable, waiting: bool = True) -> int:  # type: ignore[valid-type]
    """One window of ``limit.current`` calls taking ``latency_of(limit)`` each, with more
    calls waiting for a thread (``waiting``) at the controller's look."""
    n = limit.current
    for _ in range(n):
        limit.record(latency_of(n))
    clock.t += 1.0
    return limit.tick(waiting=waiting)


def test_grows_to_the_ceiling_while_latency_is_the_targets_own() -> None:
    clock = Clock()
    limit = ConcurrencyController(ConcurrencyOptions(start=8, maximum=512), clock=clock, cpu=FREE_CPU)
    seen = [window(limit, clock, lambda n: 1.0) for _ in range(10)]
    assert seen[-1] == 512
    assert seen[:4] == [8, 16, 32, 64]  # the first window only measures; then slow start: doubling


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
