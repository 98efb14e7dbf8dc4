"""Worker processes and their supervisor: what ``runner start`` runs.

With ``processes > 1`` a supervisor process starts that many
:class:`~runner.taskq.pool.WorkerProcess` children (spawned), restarts one that dies, and
passes the stop signal on. Children that keep dying (``crash_limit`` deaths within
``crash_window`` seconds) end the supervisor with exit 1, so systemd's restart policy and
alerts see a failure instead of a respawn every second forever. With one process it is its
own supervisor.

The supervisor (or the only process) is what systemd watches (:mod:`runner.taskq.systemd`):
each process reports to it that it is consuming and that its connection loop still turns;
a stuck child's stacks go to the journal (SIGUSR1) before the unit is restarted. With
``metrics_port`` it serves ``/metrics`` for every process at once (:mod:`runner.metrics`).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from runner import metrics
from runner.taskq.logs import configure_logging, install_stack_dumps
from runner.taskq.options import PoolOptions
from runner.taskq.pool import Service, StopSignal, WorkerProcess
from runner.taskq.systemd import LocalMonitor, QueueMonitor, Watch, notifier, read_reports

log = logging.getLogger("urltester.worker")

EXIT_CRASH_LOOP = 1

ServiceFactory = Callable[[], Service]  # picklable (a module-level function or a partial of one)


def run_process(make_service: ServiceFactory, options: PoolOptions) -> int:
    """The pool as one process: it is its own supervisor (systemd, metrics)."""
    install_stack_dumps()
    if options.metrics_port is not None:
        metrics.serve(options.metrics_port, options.metrics_address)
    worker = WorkerProcess(make_service(), options, LocalMonitor(Watch(notifier(), 1)))
    worker.install_signals()
    hard_exit(worker.run())
    return 0  # not reached


def _child(make_service: ServiceFactory, options: PoolOptions, log_level: str, log_format: str,
           reports: multiprocessing.queues.Queue[Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
    configure_logging(log_level, log_format)
    install_stack_dumps()
    reports.cancel_join_thread()  # a report still unsent must never hold up the exit
    worker = WorkerProcess(make_service(), options, QueueMonitor(reports))
    signal.signal(signal.SIGTERM, lambda s, f: worker.stop.request())
    hard_exit(worker.run())


def hard_exit(code: int) -> None:
    """Exit now, without waiting for threads.

    Everything that matters is settled (acked, requeued or left unacked for redelivery);
    what may still run is a check past the shutdown timeout or a getaddrinfo that cannot be
    interrupted, and a normal exit would wait for them (concurrent.futures joins its threads).
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_pool(make_service: ServiceFactory, options: PoolOptions, log_level: str = "info",
             log_format: str = "text") -> int:
    """Run ``options.processes`` worker processes until SIGTERM/SIGINT; restart any that dies,
    unless they keep dying (then exit ``EXIT_CRASH_LOOP``).

    ``log_format`` is handed to the children as it is: resolve ``auto`` before
    (:func:`runner.taskq.logs.resolve`), as the cli does.
    """
    if options.processes <= 1:
        return run_process(make_service, options)
    install_stack_dumps()
    serving = options.metrics_port is not None
    with metrics.multiprocess_dir() if serving else contextlib.nullcontext() as path:
        if options.metrics_port is not None:
            metrics.serve(options.metrics_port, options.metrics_address, path=path)
        return _supervise(make_service, options, log_level, log_format, path)


def _supervise(make_service: ServiceFactory, options: PoolOptions, log_level: str, log_format: str,
               metrics_path: str | None) -> int:
    ctx = multiprocessing.get_context("spawn")
    stopping = StopSignal()
    reports = ctx.Queue()
    watch = Watch(notifier(), options.processes)
    children: list[multiprocessing.process.BaseProcess] = []
    deaths: collections.deque[float] = collections.deque()
    crash_loop = False

    def start_child() -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=_child, args=(make_service, options, log_level, log_format, reports),
                           name="urltester-worker")
        proc.start()
        return proc

    def handle(signum: int, frame: object) -> None:
        stopping.request()  # nothing more here: see StopSignal

    def died(proc: multiprocessing.process.BaseProcess) -> None:
        watch.gone(proc.pid or 0)
        if metrics_path is not None and proc.pid:
            metrics.process_gone(metrics_path, proc.pid)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    children.extend(start_child() for _ in range(options.processes))
    while not stopping.is_set():
        for i, proc in enumerate(children):
            if not proc.is_alive() and not stopping.is_set():
                died(proc)
                now = time.monotonic()
                deaths.append(now)
                while deaths and now - deaths[0] > options.crash_window:
                    deaths.popleft()
                if len(deaths) >= options.crash_limit:
                    log.error("worker process %s exited with %s: %d worker processes died within %.0f s; "
                              "giving up (exit %d) so that the service manager sees the failure",
                              proc.pid, proc.exitcode, len(deaths), options.crash_window, EXIT_CRASH_LOOP)
                    crash_loop = True
                    stopping.set()
                    break
                log.warning("worker process %s exited with %s; starting another", proc.pid, proc.exitcode)
                time.sleep(1)
                children[i] = start_child()
        read_reports(reports, watch)
        for pid in watch.poll():
            # systemd's watchdog signal reaches only this process; the stuck one's stacks
            # are what an operator needs, in the journal, before the unit is restarted.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGUSR1)
        stopping.wait(0.5)
    watch.stop()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already; see WorkerProcess.drained
    log.info("stopping %d worker processes", len(children))
    for proc in children:
        if proc.pid and proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + options.shutdown_timeout + 10
    for proc in children:
        proc.join(max(0.1, deadline - time.monotonic()))
        if proc.is_alive():
            log.warning("worker process %s did not stop in time; killing it", proc.pid)
            proc.kill()
            proc.join()
    if crash_loop:
        return EXIT_CRASH_LOOP
    return 0 if all(p.exitcode == 0 for p in children) else 1
