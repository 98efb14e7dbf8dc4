"""Embedded mode with another process holding SQLite's write lock: reads go on, writes wait
for it (busy timeout), and a lock held too long is one line and exit 3, never a traceback."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from db import open_store
from db.sqlite import BUSY_TIMEOUT
from tests.support.services import run_cli, runner_env


@contextmanager
def write_lock(sqlite_url: str, seconds: float | None = None) -> Iterator[None]:
    """Hold the file's write lock from another connection (as another process would)."""
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(seconds, conn.rollback) if seconds else None
    if timer:
        timer.start()
    try:
        yield
    finally:
        if timer:
            timer.join()
        if conn.in_transaction:
            conn.rollback()
        conn.close()


def test_reads_do_not_wait_for_another_process_holding_the_write_lock(sqlite_url, target) -> None:
    env = runner_env(sqlite_url, None)
    assert run_cli(["submit", target.url("/ok"), "--wait"], env).returncode == 0
    with write_lock(sqlite_url):  # held throughout: a read that waited for it would end in exit 3
        for command in (["status"], ["doctor"], ["results", "--format", "json"]):
            out = run_cli(command, env)
            assert out.returncode == 0, (command, out.stderr)
            assert "locked" not in out.stderr, (command, out.stderr)
    assert '"ok": true' in out.stdout


def test_a_write_waits_for_the_lock_and_then_goes_ahead(sqlite_url, target) -> None:
    env = runner_env(sqlite_url, None)
    open_store(sqlite_url).close()  # created and migrated before the lock is taken
    with write_lock(sqlite_url, seconds=1.5):
        out = run_cli(["submit", target.url("/ok"), "--wait"], env)
    assert out.returncode == 0, out.stderr


def test_a_lock_held_past_the_busy_timeout_is_one_line_and_exit_3(sqlite_url, target) -> None:
    env = runner_env(sqlite_url, None)
    open_store(sqlite_url).close()
    with write_lock(sqlite_url):
        out = run_cli(["submit", target.url("/ok")], env, timeout=BUSY_TIMEOUT + 60)
    assert out.returncode == 3, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "is locked by another process (waited 10 s)" in out.stderr
