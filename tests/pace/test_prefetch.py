"""The prefetch follows the concurrency, and messages held open by a slow call get slots of
their own: a pack is acked when its last call is over, and on the mix (1% of calls hanging
until their deadline) such messages filled half the prefetch and left threads idle."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from runner.taskq.app import Call
from runner.taskq.pool import PoolOptions, WorkerProcess, _Message


def worker(concurrency: int) -> WorkerProcess:
    service: Any = SimpleNamespace(broker=None)
    return WorkerProcess(service, PoolOptions(concurrency=concurrency, processes=1))


def message(worker_: WorkerProcess, calls: int, *, waiting: int = 0, running: int = 0) -> None:
    """A pack of ``calls`` held by this process: ``waiting`` of them in the work queue,
    ``running`` on threads, the rest over (the message is open until they all are)."""
    held = _Message(SimpleNamespace(), [Call(task="t", id=str(i)) for i in range(calls)])
    worker_._messages.add(held)
    for call in range(waiting):
        worker_._work.put((held, Call(task="t", id=str(call))))
    worker_._in_flight += running


def test_the_prefetch_is_two_calls_a_thread() -> None:
    w = worker(128)
    assert w.prefetch() == 26  # 256 calls in packs of 10
    for _ in range(13):
        message(w, 10, running=10)
    for _ in range(13):
        message(w, 10, waiting=10)
    assert w.prefetch() == 26  # every message held is busy: nothing more


def test_messages_held_by_one_slow_call_get_slots_of_their_own() -> None:
    w = worker(128)
    for _ in range(13):
        message(w, 10, running=10)
    for _ in range(13):
        message(w, 10, waiting=10)
    for _ in range(10):
        message(w, 10, running=1)  # nine calls over, one hanging until its deadline
    # 10 messages held for a call's worth of work each: 9 more slots, given in quarters of 26
    assert w.prefetch() == 26 + 6
    for _ in range(40):
        message(w, 10, running=1)
    assert w.prefetch() == 52  # up to as many again, no more
