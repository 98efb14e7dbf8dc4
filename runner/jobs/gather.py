"""Questions many worker threads ask at once, answered together: group commit for reads.

Through a 20 ms link, one database round trip per call is what limited a worker twice:
a thousand redelivered calls each asking whether its job was done (:class:`~runner.jobs.tasks.DoneLookup`),
and a limited host's batch each taking its rate slot (:class:`~runner.jobs.pacing.Reservations`).
Here the first thread to ask leads: it takes everything asked so far, answers it with one
call, hands the answers out, and goes on while questions keep arriving; the others wait for
theirs. A lone question is answered alone, at the cost it had before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Gather(Generic[K, V]):
    """``ask(key)`` from any thread; ``answer(keys)`` (one call for a round) returns the
    answers in the keys' order. The same key asked twice at once shares one answer; an
    exception from ``answer`` is raised to every asker of that round."""

    def __init__(self, answer: Callable[[list[K]], Sequence[V]], *, most: int = 5000) -> None:
        self.answer = answer
        self.most = most
        self._lock = threading.Lock()
        self._pending: dict[K, Future[V]] = {}
        self._leading = False

    def ask(self, key: K) -> V:
        with self._lock:
            answer = self._pending.get(key)
            if answer is None:
                answer = self._pending[key] = Future()
            lead, self._leading = not self._leading, True
        if lead:
            self._lead()
        return answer.result()

    def waiting(self) -> int:
        """Questions asked and not yet taken by a round: what the next round answers."""
        with self._lock:
            return len(self._pending)

    def _lead(self) -> None:
        while True:
            with self._lock:
                keys = list(self._pending)[:self.most]
                if not keys:
                    self._leading = False
                    return
                waiting = [self._pending.pop(key) for key in keys]
            try:
                answers = self.answer(keys)
            except BaseException as exc:  # noqa: BLE001 - every asker of the round gets it
                for future in waiting:
                    future.set_exception(exc)
                continue
            for future, value in zip(waiting, answers, strict=True):
                future.set_result(value)
