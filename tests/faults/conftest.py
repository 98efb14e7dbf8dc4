"""Fixtures for the fault suite: a counting target and a harness.

The database is the test run's own (tests/conftest.py ``pg_url``: a database per run,
emptied per test), so the suite may terminate every connection to it without touching
anyone else's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict

import pytest

from tests.faults.figures import FIGURES, ROWS
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The rows a case recorded go on its report (tests/conftest.py prints the table)."""
    start = len(ROWS)
    yield
    item.user_properties.extend((FIGURES, asdict(row)) for row in ROWS[start:])

