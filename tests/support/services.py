"""Real PostgreSQL and RabbitMQ for integration tests, and ``runner`` processes.

Laptop: a test whose service is unreachable is skipped with the reason. CI (CI=true):
it fails, so a missing service can never turn into a green run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_DATABASE_URL = "postgresql://postgres:postgres@127.0.0.1:5432/urltester_test"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
ROOT = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: each socket stays bound until all are chosen (ports chosen
    one after another can repeat: a site's "dead" port once came back as nginx's own)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def unavailable(what: str, why: str) -> None:
    message = f"{what} unreachable ({why}); set URLTESTER_TEST_{'DATABASE' if 'Postgre' in what else 'BROKER'}_URL"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def postgres_url() -> str:
    """A database of this test run's own, on the server URLTESTER_TEST_DATABASE_URL names.

    The name gets the process id appended, so runs on one server (two engineers, CI beside a
    developer) never see each other's rows; :func:`drop_postgres` removes it at the end.
    """
    import psycopg2

    url = os.environ.get("URLTESTER_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    parts = urlsplit(url)
    dbname = f"{parts.path.lstrip('/') or 'urltester_test'}_{os.getpid()}"
    url = urlunsplit(parts._replace(path=f"/{dbname}"))
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = psycopg2.connect(admin, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        unavailable("PostgreSQL", str(exc).splitlines()[0])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{dbname}"')
    conn.close()
    return url


def drop_postgres(url: str) -> None:
    import psycopg2

    parts = urlsplit(url)
    conn = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=3)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    conn.close()


def reset_postgres(url: str) -> None:
    """An empty, migrated schema."""
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        # Every table, whatever migrations add (regions, tokens, host limits ...).
        cur.execute("DROP SCHEMA public CASCADE")
        cur.execute("CREATE SCHEMA public")
    conn.close()


def broker_url() -> str:
    import socket

    url = os.environ.get("URLTESTER_TEST_BROKER_URL", DEFAULT_BROKER_URL)
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=3).close()
    except OSError as exc:
        unavailable("RabbitMQ", str(exc))
    return url


def new_queue_name() -> str:
    return f"urltester_test_{uuid.uuid4().hex[:10]}"


def delete_queues(url: str, queue: str) -> None:
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            ch = conn.channel()
            from runner.taskq.broker import DELAY_BUCKETS, delay_queue_name

            for name in (queue, f"{queue}.dead", *(delay_queue_name(queue, b) for b in DELAY_BUCKETS)):
                try:
                    ch.queue_delete(name)
                except Exception:  # noqa: BLE001 - already gone
                    ch = conn.channel()
    except Exception:  # noqa: BLE001 - cleanup is best effort
        pass


def runner_env(database_url: str, broker_url: str | None, queue: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("URLTESTER_")}
    env["URLTESTER_DATABASE_URL"] = database_url
    env["URLTESTER_BROKER_URL"] = broker_url or "memory://"
    if queue:
        env["URLTESTER_QUEUE"] = queue
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess[str]:  # noqa: A002
    return subprocess.run([sys.executable, "-m", "runner", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, input=input, cwd=ROOT)


@contextmanager
def worker(env: dict[str, str], *args: str, log_path: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """A ``runner start`` process; stopped with SIGTERM (then SIGKILL) at the end."""
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "runner", "start", *args], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if log_path:
            log.close()


def wait_until(predicate, timeout: float, interval: float = 0.1, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
