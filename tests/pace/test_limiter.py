"""The adaptive concurrency limit, driven by a fake clock: it must grow while more in
flight costs no latency, and shrink when calls start to queue (latency inflates)."""

from __future__ import annotations

from runner.taskq.limiter import ConcurrencyLimit, LimitOptions


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def window(limit: ConcurrencyLimit, clock: Clock, latency_of: callable) -> int:  # type: ignore[valid-type]
    """One window in which every slot is busy and calls wait: ``latency_of(limit)`` each."""
    n = limit.current
    for _ in range(n):
        assert limit.acquire()
    limit._waited += 1  # noqa: SLF001 - demand beyond the limit, as a waiting thread would record
    for _ in range(n):
        limit.release(latency_of(n))
    for _ in range(n):
        limit.acquire()  # slots stay busy into the next window
    clock.t += 1.0
    value = limit.tick()
    for _ in range(n):
        limit.release(latency_of(n))
    limit._samples.clear()  # noqa: SLF001 - those releases belong to the window just decided
    return value


def test_grows_to_the_ceiling_while_latency_is_the_targets_own() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(LimitOptions(start=8, maximum=512), clock=clock)
    seen = [window(limit, clock, lambda n: 1.0) for _ in range(10)]
    assert seen[-1] == 512
    assert seen[:3] == [16, 32, 64]  # slow start: doubling


def test_settles_where_the_cpu_saturates() -> None:
    """A process that can do 1,000 calls/s of CPU on 100 ms targets: beyond 100 in flight,
    each call also waits its turn, so latency grows with the limit."""
    clock = Clock()
    limit = ConcurrencyLimit(LimitOptions(start=8, maximum=1024), clock=clock)

    def latency(n: int) -> float:
        return max(0.1, n / 1000)

    seen = [window(limit, clock, latency) for _ in range(40)]
    assert 80 <= min(seen[-10:]) and max(seen[-10:]) <= 200, seen


def test_fixed_never_moves() -> None:
    clock = Clock()
    limit = ConcurrencyLimit(LimitOptions.fixed_at(128), clock=clock)
    assert [window(limit, clock, lambda n: 0.001 * n) for _ in range(5)] == [128] * 5


def test_acquire_waits_for_a_slot_and_gives_up_on_stop() -> None:
    limit = ConcurrencyLimit(LimitOptions.fixed_at(1))
    assert limit.acquire()
    assert limit.acquire(stop=lambda: True) is False
    limit.release(0.01)
    assert limit.acquire()


def test_slower_targets_reset_the_base_instead_of_starving_the_pool() -> None:
    """The mix changes from 100 ms to 1 s targets: one cut shows it was not our queueing."""
    clock = Clock()
    limit = ConcurrencyLimit(LimitOptions(start=8, maximum=1024), clock=clock)
    seen = [window(limit, clock, lambda n: max(0.1 if clock.t < 10 else 1.0, n / 1000)) for _ in range(20)]
    assert seen[-1] == 1024, seen
    assert min(seen[10:]) >= 64, seen
