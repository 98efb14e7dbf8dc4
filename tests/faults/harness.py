"""What every fault test does around its damage: submit a batch, run workers, count.

``Harness`` submits through :meth:`runner.jobs.runtime.Runtime.submit` (the one way jobs enter),
starts ``runner start`` processes, waits on the database, and finally measures the row
"N submitted, N stored, 0 duplicates, 0 stuck" with its own plain SQL connection (so a test
that terminates the workers' database connections never touches its own).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from runner.jobs.runtime import Runtime
from runner.jobs.settings import Settings
from tests.faults.figures import Row, record
from tests.support.services import ROOT, runner_env, wait_until

N = 2000  # URLs per case


@dataclass
class Target:
    base: str

    def urls(self, n: int = N, *, tag: str = "", slower_ms: int = 0) -> list[str]:
        """``n`` distinct URLs: most answer 200 after 0-20 ms, one in ten after 50 ms,
        one in ten with a 500 (a failed check, still exactly one result); each ``slower_ms``
        later still, for a case whose damage must land while the batch is still running."""
        out = []
        for i in range(n):
            if i % 10 == 3:
                out.append(f"{self.base}/status/500?t={tag}&n={i}")
            elif i % 10 == 7:
                out.append(f"{self.base}/ok?ms={50 + slower_ms}&t={tag}&n={i}")
            else:
                out.append(f"{self.base}/ok?ms={(i % 5) * 5 + slower_ms}&t={tag}&n={i}")
        return out

    def hits(self) -> dict[str, int]:
        with urllib.request.urlopen(self.base + "/__hits", timeout=10) as response:  # noqa: S310 - local
            return json.loads(response.read())


class Harness:
    def __init__(self, pg_url: str, amqp_url: str, queue: str, target: Target, tmp_path: Path, case: str) -> None:
        self.pg_url = pg_url
        self.amqp_url = amqp_url
        self.queue = queue
        self.target = target
        self.tmp_path = tmp_path
        self.case = case.removeprefix("test_")
        self._runtime: Runtime | None = None
        self._db = psycopg2.connect(pg_url, application_name="urltester-faults-monitor")
        self._db.autocommit = True
        self.workers: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []

    # ------------------------------------------------------------------ submitting

    def runtime(self, broker_url: str | None = None) -> Runtime:
        if broker_url is not None:
            return Runtime(Settings(database_url=self.pg_url, broker_url=broker_url, queue=self.queue))
        if self._runtime is None:
            self._runtime = Runtime(Settings(database_url=self.pg_url, broker_url=self.amqp_url, queue=self.queue))
        return self._runtime

    def submit(self, urls: list[str]) -> list[int]:
        report = self.runtime().submit(urls, batch=self.case)
        assert not report.rejected and len(report.job_ids) == len(urls)
        return report.job_ids

    # ------------------------------------------------------------------ workers

    def env(self, *, database_url: str | None = None, broker_url: str | None = None) -> dict[str, str]:
        return runner_env(database_url or self.pg_url, broker_url or self.amqp_url, self.queue)

    def start_worker(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """``runner start --processes 1`` (unless overridden) in a session of its own."""
        path = self.tmp_path / f"worker{len(self.workers)}.log"
        log = open(path, "w")  # noqa: SIM115 - closed with the process
        argv = [sys.executable, "-m", "runner", "start", "--processes", "1", "--concurrency", "32", *args]
        proc = subprocess.Popen(argv, env=env or self.env(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        log.close()
        self.workers.append(proc)
        self.logs.append(path)
        return proc

    def log(self, proc: subprocess.Popen[str]) -> str:
        return self.logs[self.workers.index(proc)].read_text()

    def wait_consuming(self, proc: subprocess.Popen[str], timeout: float = 60) -> None:
        """Wait until the worker consumes from the queue (its log says so)."""
        def consuming() -> bool:
            assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{self.log(proc)[-3000:]}"
            return "consuming from" in self.log(proc)
        wait_until(consuming, timeout, message="the worker to consume")

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if self._runtime is not None:
            self._runtime.close()
        self._db.close()

    # ------------------------------------------------------------------ the database's view

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._db.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def done(self) -> int:
        return self.sql("SELECT count(*) FROM jobs WHERE state = 'done'")[0][0]

    def states(self) -> dict[str, int]:
        return dict(self.sql("SELECT state, count(*) FROM jobs GROUP BY state"))

    def wait_done(self, n: int, timeout: float, *, alive: list[subprocess.Popen[str]] | None = None) -> float:
        """Wait until at least ``n`` jobs are done; returns when (monotonic)."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.done()
            if done >= n:
                return time.monotonic()
            for proc in alive or ():
                assert proc.poll() is None, f"worker exited with {proc.returncode}:\n{self.log(proc)[-3000:]}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{done} of {n} jobs done after {timeout:.0f} s; states {self.states()}")
            time.sleep(0.05)

    def wait_idle(self, timeout: float = 30, quiet: float = 1.5) -> None:
        """Wait until nothing changes in the database for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            now = (self.done(), tuple(sorted(self.states().items())))
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)
        raise AssertionError(f"the database kept changing for {timeout} s")

    def figures(self, recover_s: float, note: str = "") -> Row:
        """Measure and print the row; the caller asserts it is clean."""
        submitted = self.sql("SELECT count(*) FROM jobs")[0][0]
        stored = self.sql("SELECT count(*) FROM results")[0][0]
        duplicates = self.sql("SELECT count(*) FROM (SELECT job_id FROM results GROUP BY job_id "
                              "HAVING count(*) > 1) d")[0][0]
        stuck = self.sql("SELECT count(*) FROM jobs WHERE state <> 'done'")[0][0]
        orphans = self.sql("SELECT count(*) FROM jobs j LEFT JOIN results r ON r.job_id = j.id "
                           "WHERE r.job_id IS NULL")[0][0]
        row = Row(self.case, submitted, stored, duplicates, stuck + orphans, round(recover_s, 1), note)
        record(row)
        return row

    def assert_clean(self, row: Row, n: int = N) -> None:
        assert row.submitted == n, row
        assert row.clean, f"not every job has exactly one result: {row}"
        # Duplicates (a publish retried after a cut, a requeue) may still be on their way
        # to be skipped; they must drain, and nothing may be dead-lettered.
        broker = self.runtime().broker
        wait_until(lambda: broker.ping().ready == 0, 15, interval=0.2, message="the queue to drain")
