"""Fixtures shared by every test: local targets, real services, isolated settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.faults.figures import FIGURES, Row, table
from tests.support import services
from tests.support.targets import TargetServer

if TYPE_CHECKING:
    from db import Store
    from tests.support.site import Site


@pytest.fixture(autouse=True)
def _no_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may read or write the user's real database or broker."""
    for name in ("URLTESTER_DATABASE_URL", "URLTESTER_BROKER_URL", "URLTESTER_QUEUE",
                 "URLTESTER_DENY_PRIVATE", "URLTESTER_ALLOW_NETWORKS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def target() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/urltester.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Store]:
    """A store on each database: the embedded SQLite and a real PostgreSQL (empty schema)."""
    from db import open_store

    s = open_store(sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url"))
    yield s
    s.close()


@pytest.fixture(scope="session")
def _pg_session_url() -> Iterator[str]:
    url = services.postgres_url()
    yield url
    services.drop_postgres(url)


@pytest.fixture
def pg_url(_pg_session_url: str) -> str:
    """A real PostgreSQL database with an empty schema for this test."""
    services.reset_postgres(_pg_session_url)
    return _pg_session_url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return services.broker_url()


@pytest.fixture
def queue_name(amqp_url: str) -> Iterator[str]:
    """A queue of this test's own on the real RabbitMQ, deleted afterwards."""
    name = services.new_queue_name()
    yield name
    services.delete_queues(amqp_url, name)


@pytest.fixture(scope="session")
def served_site() -> Iterator[Site]:
    """The generated site of tests/support/site.py on a real nginx, for the whole session
    (the discovery tests now, the crawl's later): skips without nginx, fails with CI=true."""
    from tests.support.site import serve_site

    with serve_site() as site:
        yield site


# The fault suite's figures (tests/faults/figures.py), from every test's report: here, not in
# tests/faults/conftest.py, because pytest-xdist's controlling process loads only this one.
_FAULT_ROWS: list[Row] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _FAULT_ROWS.extend(Row(**value) for key, value in report.user_properties if key == FIGURES)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FAULT_ROWS:
        terminalreporter.write_sep("=", "fault suite figures")
        for line in table(_FAULT_ROWS):
            terminalreporter.write_line(line)
