"""The pool's worker threads are bare (runner.taskq.pool.start_bare): they must leave nothing
behind in threading's table, or a worker that grows and shrinks its pool for months leaks."""

from __future__ import annotations

import logging
import threading

from runner.taskq.pool import start_bare
from tests.support.services import wait_until


def test_bare_threads_that_log_leave_no_entry_behind() -> None:
    before = len(threading.enumerate())
    finished = threading.Semaphore(0)
    n = 300

    def work() -> None:
        logging.getLogger("urltester.test").debug("a log record asks threading.current_thread()")
        threading.current_thread()
        finished.release()

    for _ in range(n):
        start_bare(work)
    for _ in range(n):
        assert finished.acquire(timeout=60), "a bare thread did not run"
    # Each thread removes its entry as it ends, after release(): wait for the last few.
    wait_until(lambda: len(threading.enumerate()) <= before, 30, interval=0.05,
               message="every bare thread's entry in threading's table to go")
