"""``runner serve`` as a process on a free port, tokens made with ``runner token``."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.services import ROOT, free_port, run_cli, runner_env, wait_until

ARTIFACTS = ROOT / "tests" / "artifacts"  # gitignored: screenshots, server logs


_names = itertools.count(1)


@dataclass
class Server:
    base: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[str]
    db: Path | None = None

    def token(self, name: str | None = None, *extra: str) -> str:
        """A new token (named uniquely unless ``name`` is given)."""
        name = name or f"t{next(_names)}"
        out = run_cli(["token", "create", name, *extra], self.env)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(env: dict[str, str], log: Path, *args: str) -> Iterator[Server]:
    port = free_port()
    handle = open(log, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "runner", "serve", "--port", str(port), *args], env=env, cwd=ROOT,
                            stdout=handle, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    server = Server(f"http://127.0.0.1:{port}", env, log, proc)

    def up() -> bool:
        assert proc.poll() is None, f"runner serve exited {proc.returncode}:\n{log.read_text()}"
        try:
            return httpx.get(server.base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, 0.1, "runner serve to answer /healthz")
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        handle.close()


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """runner serve on the embedded default (SQLite, checks in-process), small bounds for the
    tests; one per module (tests make tokens of their own names)."""
    tmp = tmp_path_factory.mktemp("serve")
    env = runner_env(f"sqlite:///{tmp}/api.db", None, URLTESTER_API_MAX_BODY="2000000",
                     URLTESTER_API_MAX_EVENT_STREAMS="2")
    with serve(env, tmp / "serve.log") as server:
        server.db = tmp / "api.db"
        yield server
