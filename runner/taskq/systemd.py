"""What a worker tells systemd (``Type=notify``): ready, alive, and how it is doing.

The protocol (sd_notify(3)) is one datagram of ``KEY=value`` lines to the socket named by
``$NOTIFY_SOCKET``; ten lines of code, so no libsystemd binding. Outside systemd (no
``NOTIFY_SOCKET``) every call does nothing.

Only the main process may notify (``NotifyAccess=main``), and one supervisor speaks for
many worker processes, so the processes report to a :class:`Watch` and it decides:

- ``READY=1`` once every worker process is consuming (the supervisor reached the database
  and RabbitMQ before starting them; each process connected to RabbitMQ itself).
- ``WATCHDOG=1`` every half ``WatchdogSec``, but only while every process's connection
  loop has ticked recently (it ticks every 50 ms, and before each reconnect attempt): a loop
  stuck for longer gets no ping, and systemd restarts the unit.
- ``STATUS=`` with checks per second and checks in flight, every few seconds.
- ``STOPPING=1`` when a stop begins.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing.queues
import os
import queue
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("urltester.worker")

STATUS_EVERY = 2.0  # seconds between two STATUS= lines
RATE_WINDOW = 10.0  # seconds of history behind "checks/s"


class Notifier:
    """Sends sd_notify messages to one socket (or, with no socket, nowhere)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog = watchdog_usec / 1e6 if watchdog_usec else None  # seconds, or off
        self._failed = False

    @classmethod
    def from_env(cls) -> Notifier:
        """The socket systemd gave this process. The variables are removed from the
        environment, so worker processes started later do not think they are the service."""
        address = os.environ.pop("NOTIFY_SOCKET", None) or None
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        watchdog = int(usec) if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(address, watchdog)

    def send(self, *lines: str) -> None:
        if not self.address:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            if not self._failed:  # once: systemd gone away must not flood the log
                log.warning("cannot notify systemd at %s: %s", self.address, exc)
                self._failed = True


@functools.cache
def notifier() -> Notifier:
    """This process's notifier, read from the environment once."""
    return Notifier.from_env()


class Watch:
    """What the worker processes said lately, turned into sd_notify messages by :meth:`poll`.

    ``now`` is injectable, so the rules can be tested without waiting.
    """

    def __init__(self, notify: Notifier, processes: int, *, now: Callable[[], float] = time.monotonic) -> None:
        self.notify = notify
        self.processes = processes
        self.now = now
        self.ready_pids: set[int] = set()
        self.ticks: dict[int, float] = {}
        self.processed: dict[int, int] = {}
        self.in_flight: dict[int, int] = {}
        self.processed_by_gone = 0
        self.sent_ready = False
        self.stopping = False
        self._history: deque[tuple[float, int]] = deque()
        self._next_watchdog = 0.0
        self._next_status = 0.0
        self._stale_logged = False

    # ------------------------------------------------------------------ what processes say

    def ready(self, pid: int) -> None:
        self.ready_pids.add(pid)
        self.ticks[pid] = self.now()

    def tick(self, pid: int, processed: int, in_flight: int) -> None:
        self.ticks[pid] = self.now()
        self.processed[pid] = processed
        self.in_flight[pid] = in_flight

    def gone(self, pid: int) -> None:
        """A process exited: its checks still count towards the rate; it is no longer watched."""
        self.processed_by_gone += self.processed.pop(pid, 0)
        self.ticks.pop(pid, None)
        self.in_flight.pop(pid, None)
        self.ready_pids.discard(pid)

    def stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.notify.send("STOPPING=1", "STATUS=stopping: finishing checks in flight")

    # ------------------------------------------------------------------ what systemd hears

    def rate(self) -> float:
        """Checks per second over the last ``RATE_WINDOW`` seconds."""
        now = self.now()
        total = self.processed_by_gone + sum(self.processed.values())
        self._history.append((now, total))
        while len(self._history) > 2 and now - self._history[1][0] >= RATE_WINDOW:
            self._history.popleft()
        then, before = self._history[0]
        return (total - before) / (now - then) if now > then else 0.0

    def status(self) -> str:
        return (f"STATUS={self.rate():.1f} checks/s, {sum(self.in_flight.values())} in flight, "
                f"{len(self.ready_pids)} of {self.processes} processes consuming")

    def stale(self) -> list[int]:
        """Processes whose loop has not ticked for most of the watchdog interval."""
        if self.notify.watchdog is None:
            return []
        limit = self.notify.watchdog * 0.75
        now = self.now()
        return [pid for pid, at in self.ticks.items() if now - at > limit]

    def poll(self) -> list[int]:
        """Send what is due. Returns the processes found stuck just now (once each spell),
        so the supervisor can have them print their stacks."""
        newly_stuck: list[int] = []
        if self.stopping:
            return newly_stuck
        now = self.now()
        if not self.sent_ready and len(self.ready_pids) >= self.processes:
            self.sent_ready = True
            self.notify.send("READY=1", self.status())
            self._next_status = now + STATUS_EVERY
        if self.sent_ready and self.notify.watchdog is not None and now >= self._next_watchdog:
            stale = self.stale()
            if stale:
                if not self._stale_logged:
                    log.error("worker process(es) %s stuck (no sign of life for %.0f s); "
                              "withholding the watchdog ping", ", ".join(map(str, stale)),
                              self.notify.watchdog * 0.75)
                    self._stale_logged = True
                    newly_stuck = stale
            else:
                self._stale_logged = False
                self.notify.send("WATCHDOG=1")
                self._next_watchdog = now + self.notify.watchdog / 2
        if self.sent_ready and now >= self._next_status:
            self.notify.send(self.status())
            self._next_status = now + STATUS_EVERY
        return newly_stuck


# -------------------------------------------------------------- how processes report


class Monitor(Protocol):
    """Who hears how a worker process is doing: the supervisor's :class:`Watch`.

    Called from the connection thread (runner.taskq.pool.WorkerProcess); must not block.
    """

    def ready(self) -> None:
        """Connected to RabbitMQ and consuming (again, after a reconnect)."""

    def tick(self, processed: int, in_flight: int) -> None:
        """The connection loop turned (every ``TICK_EVERY`` seconds or so)."""

    def stopping(self) -> None:
        """This process began to stop."""


class NoMonitor:
    def ready(self) -> None:
        pass

    def tick(self, processed: int, in_flight: int) -> None:
        pass

    def stopping(self) -> None:
        pass


class LocalMonitor:
    """The only process of a pool is its own supervisor: it tells systemd itself."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch
        self.pid = os.getpid()

    def ready(self) -> None:
        self.watch.ready(self.pid)
        self.watch.poll()

    def tick(self, processed: int, in_flight: int) -> None:
        self.watch.tick(self.pid, processed, in_flight)
        self.watch.poll()

    def stopping(self) -> None:
        self.watch.stop()


class QueueMonitor:
    """A child's reports, through a multiprocessing queue, to the supervisor's Watch."""

    def __init__(self, reports: multiprocessing.queues.Queue[Any]) -> None:
        self.reports = reports
        self.pid = os.getpid()

    def ready(self) -> None:
        self.reports.put_nowait(("ready", self.pid, 0, 0))

    def tick(self, processed: int, in_flight: int) -> None:
        self.reports.put_nowait(("tick", self.pid, processed, in_flight))

    def stopping(self) -> None:
        pass  # the supervisor stops first and says so itself


def read_reports(reports: multiprocessing.queues.Queue[Any], watch: Watch) -> None:
    """Hand the children's reports (:class:`QueueMonitor`) to the supervisor's Watch."""
    while True:
        try:
            kind, pid, processed, in_flight = reports.get_nowait()
        except queue.Empty:
            return
        if kind == "ready":
            watch.ready(pid)
        else:
            watch.tick(pid, processed, in_flight)
