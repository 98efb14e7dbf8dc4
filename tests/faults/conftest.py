"""Fixtures for the fault suite: a counting target and a harness.

The database is the test run's own (tests/conftest.py ``pg_url``: a database per run,
emptied per test), so the suite may terminate every connection to it without touching
anyone else's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.faults.figures import ROWS, table
from tests.faults.harness import Harness, Target
from tests.support import services


@pytest.fixture(scope="session")
def fault_target() -> Iterator[Target]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.faults.target"], cwd=services.ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield Target(f"http://127.0.0.1:{port}")
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def harness(pg_url: str, amqp_url: str, queue_name: str, fault_target: Target, tmp_path,
            request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(pg_url, amqp_url, queue_name, fault_target, tmp_path, case=request.node.name)
    try:
        yield h
    finally:
        h.close()


def pytest_terminal_summary(terminalreporter) -> None:
    if ROWS:
        terminalreporter.write_sep("=", "fault suite figures")
        for line in table(ROWS):
            terminalreporter.write_line(line)

