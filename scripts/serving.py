"""``runner serve`` as a process for the scripts (scripts/bench-siege, scripts/fuzz-api): not product code.

Imported by the scripts from this folder (they put scripts/ on sys.path).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def recreate(admin: str, name: str) -> str:
    """A database of the script's own, dropped and created afresh; its URL."""
    import psycopg2

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(env: dict[str, str], log_path: Path, *args: str,
           root: Path = ROOT) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``runner serve`` on a free port until /healthz answers: its base URL and process.
    ``root``: the checkout whose code serves (another one's, to compare before and after)."""
    import httpx

    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    argv = [sys.executable, "-m", "runner", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(argv, env=env, cwd=root,  # noqa: S603 - our own CLI, an argv list (no shell)
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"runner serve did not start; see {log_path}") from None
                time.sleep(0.1)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def token(env: dict[str, str], name: str, *extra: str) -> str:
    argv = [sys.executable, "-m", "runner", "token", "create", name, *extra]
    return subprocess.run(argv, env=env, cwd=ROOT,  # noqa: S603 - our own CLI, an argv list (no shell)
                          capture_output=True, text=True, check=True).stdout.strip()
