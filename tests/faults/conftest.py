"""Fixtures for the fault suite: a database of its own, a counting target, a harness.

The suite uses its own PostgreSQL database (``<test database>_faults``): other engineers'
tests reset the shared test database at will, and this suite must be able to terminate
every connection to its database without touching theirs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.faults.figures import ROWS, table
from tests.faults.harness import Harness, Target
from tests.support import services


@pytest.fixture(scope="session")
def _faults_db_url(_pg_session_url: str) -> str:
    import psycopg2

    parts = urlsplit(_pg_session_url)
    name = (parts.path.lstrip("/") or "urltester_test") + "_faults"
    conn = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=3)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def pg_url(_faults_db_url: str) -> str:
    """This suite's own database, emptied for each test."""
    services.reset_postgres(_faults_db_url)
    return _faults_db_url


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
def harness(pg_url: str, amqp_url: str, queue_name: str, fault_target: Target, tmp_path,  # noqa: ANN001
            request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(pg_url, amqp_url, queue_name, fault_target, tmp_path, case=request.node.name)
    try:
        yield h
    finally:
        h.close()


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    if ROWS:
        terminalreporter.write_sep("=", "fault suite figures")
        for line in table(ROWS):
            terminalreporter.write_line(line)

