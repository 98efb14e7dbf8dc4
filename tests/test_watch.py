"""The rules behind what systemd hears, and the log formats, on an injected clock (fast).

tests/test_operations.py proves the same on a real ``runner start``; these pin down the
cases a real run cannot reach quickly: a stuck process, one of several not ready yet.
"""

from __future__ import annotations

import json
import logging
import socket

import pytest

from runner.taskq.logs import JournalFormatter, JsonFormatter, syslog_level
from runner.taskq.systemd import Notifier, Watch


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Heard(Notifier):
    def __init__(self, watchdog_usec: int | None = 10_000_000) -> None:
        super().__init__("unused", watchdog_usec)
        self.lines: list[str] = []

    def send(self, *lines: str) -> None:
        self.lines.extend(lines)


def test_ready_only_once_every_process_consumes() -> None:
    heard, clock = Heard(), Clock()
    watch = Watch(heard, 2, now=clock)
    watch.ready(11)
    watch.poll()
    assert "READY=1" not in heard.lines
    assert "WATCHDOG=1" not in heard.lines  # systemd arms the watchdog at READY=1
    watch.ready(12)
    watch.poll()
    assert heard.lines[0] == "READY=1"
    assert heard.lines[1].startswith("STATUS=0.0 checks/s, 0 in flight, 2 of 2 processes consuming")


def test_a_stuck_process_gets_no_watchdog_ping_and_a_live_one_does() -> None:
    heard, clock = Heard(watchdog_usec=10_000_000), Clock()
    watch = Watch(heard, 2, now=clock)
    watch.ready(11)
    watch.ready(12)
    watch.poll()
    assert heard.lines.count("WATCHDOG=1") == 1
    stuck = []
    for _ in range(20):  # 10 s: process 12's loop ticks, process 11's does not
        clock.t += 0.5
        watch.tick(12, 0, 0)
        stuck += watch.poll()
    assert watch.stale() == [11]
    assert stuck == [11]  # once: the supervisor has it dump its stacks once
    pings = heard.lines.count("WATCHDOG=1")
    assert pings == 2  # at 5 s (both fresh enough); none after 11 went quiet for 7.5 s
    watch.gone(11)  # the supervisor replaced it
    watch.poll()
    assert heard.lines.count("WATCHDOG=1") == pings + 1


def test_status_rate_counts_processes_that_exited() -> None:
    heard, clock = Heard(watchdog_usec=None), Clock()
    watch = Watch(heard, 1, now=clock)
    watch.ready(11)
    watch.poll()
    watch.tick(11, 0, 0)
    clock.t += 2
    watch.tick(11, 100, 7)
    watch.gone(11)  # its 100 checks still happened
    watch.ready(12)
    watch.tick(12, 0, 3)
    assert watch.status().startswith("STATUS=50.0 checks/s, 3 in flight, 1 of 1 processes consuming")
    assert "WATCHDOG=1" not in heard.lines  # no WATCHDOG_USEC: no pings


def test_notifier_sends_one_datagram_and_removes_its_variables(tmp_path, monkeypatch) -> None:
    path = f"/tmp/nfy-{id(tmp_path)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        try:
            monkeypatch.setenv("NOTIFY_SOCKET", path)
            monkeypatch.setenv("WATCHDOG_USEC", "3000000")
            monkeypatch.setenv("WATCHDOG_PID", "1")  # another process's watchdog: not ours
            notifier = Notifier.from_env()
            notifier.send("READY=1", "STATUS=hello")
            assert sock.recv(100) == b"READY=1\nSTATUS=hello"
            assert notifier.watchdog is None
            import os

            assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
        finally:
            os.unlink(path)


@pytest.mark.parametrize(("level", "priority"), [(logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4),
                                                  (logging.ERROR, 3), (logging.CRITICAL, 2), (25, 6)])
def test_syslog_levels(level: int, priority: int) -> None:
    assert syslog_level(level) == priority


def record(msg: str, level: int = logging.ERROR, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            info = sys.exc_info()
    return logging.LogRecord("urltester.worker", level, __file__, 1, msg, (), info)


def test_journal_lines_each_carry_the_level_so_a_traceback_stays_one_priority() -> None:
    lines = JournalFormatter().format(record("it broke", exc=True)).splitlines()
    assert lines[0].startswith("<3>MainProcess[") and lines[0].endswith("urltester.worker: it broke")
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)


def test_json_lines_escape_what_a_server_sent() -> None:
    text = JsonFormatter().format(record("title \x1b[31mred\x9b1m\n<4>forged", level=logging.INFO))
    assert "\n" not in text and "\x1b" not in text and "\x9b" not in text
    entry = json.loads(text)
    assert entry["message"] == "title \x1b[31mred\x9b1m\n<4>forged" and entry["level"] == "info"
