"""Operating a worker: Prometheus metrics, systemd's notify protocol, crash loops, logs.

Each test runs a real ``runner start`` on real PostgreSQL and RabbitMQ (or, for what
happens before they are reachable, on a broker port nobody listens on) and reads what an
operator's tools would read: ``/metrics`` through prometheus_client's own parser, the
datagrams systemd would get on ``$NOTIFY_SOCKET``, the log lines journald would store.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from runner.taskq.broker import AmqpBroker
from tests.support.services import ROOT, free_port, run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]


@pytest.fixture
def env(pg_url, amqp_url, queue_name) -> dict[str, str]:
    return runner_env(pg_url, amqp_url, queue_name)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``: (name, sorted labels) -> value, parsed by prometheus_client."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:  # local
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def done(env: dict[str, str]) -> int:
    out = run_cli(["results", "--format", "json", "--state", "done"], env)
    return len(out.stdout.splitlines())


# ---------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("processes", ["2", "1"])  # summed from the children's files; one process's own
def test_metrics_count_every_check_of_every_process(processes, env, amqp_url, queue_name, target, tmp_path) -> None:
    port = free_port()
    ok = [target.url(f"/ok?n={i}") for i in range(20)]
    failing = [target.url(f"/status/404?n={i}") for i in range(10)]
    with worker(env, "--processes", processes, "--concurrency", "4", "--metrics-port", str(port),
                log_path=tmp_path / "worker.log"):
        assert run_cli(["submit", *ok, *failing], env).returncode == 0
        AmqpBroker(amqp_url, queue_name).publish([b"not json at all"])  # poison: dead-lettered
        wait_until(lambda: done(env) == 30, 60, message="30 results")
        wait_until(lambda: scrape(port)[("urltester_messages_dead_lettered_total", ())] == 1, 20,
                   message="the poison message counted")
        m = scrape(port)
    log = (tmp_path / "worker.log").read_text()
    assert m[("urltester_checks_total", (("outcome", "ok"),))] == 20, log
    assert m[("urltester_checks_total", (("outcome", "http_error"),))] == 10
    assert m[("urltester_checks_total", (("outcome", "dns_error"),))] == 0  # every outcome, from the start
    assert m[("urltester_check_duration_seconds_count", (("phase", "total"),))] == 30
    assert m[("urltester_check_duration_seconds_count", (("phase", "ttfb"),))] == 30
    assert m[("urltester_check_duration_seconds_count", (("phase", "tls"),))] == 0  # plain http
    assert m[("urltester_check_duration_seconds_sum", (("phase", "total"),))] > 0
    assert m[("urltester_check_attempts_total", ())] >= 30
    assert m[("urltester_checks_in_flight", ())] == 0
    assert m[("urltester_results_stored_total", ())] == 30
    assert m[("urltester_writer_commit_seconds_count", ())] >= 1
    assert m[("urltester_messages_received_total", ())] >= 2
    assert m[("urltester_publish_confirms_total", (("result", "ack"),))] >= 1  # the dead letter's publish
    assert ("urltester_queue_messages", (("queue", "work"),)) in m
    assert ("urltester_queue_messages", (("queue", "dead"),)) in m
    labels = {v for (_, ls) in m for _, v in ls}
    assert not any("127.0.0.1" in v or "/" in v for v in labels), "a URL leaked into a label"


def test_a_metrics_port_in_use_is_one_clear_error(env) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "runner", "start", "--processes", "2",
                              "--metrics-address", "127.0.0.1"], env={**env, "URLTESTER_METRICS_PORT": str(port)},
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------------- systemd


class NotifySocket:
    """What systemd would be: a datagram socket named by NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="nfy", dir="/tmp")  # AF_UNIX paths are short
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def read_until(self, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; systemd heard: {self.messages}")
            self.sock.settimeout(left)
            try:
                self.messages.extend(self.sock.recv(4096).decode().split("\n"))
            except TimeoutError:
                pass

    def drain(self) -> None:
        """Read whatever has arrived, without waiting."""
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.extend(self.sock.recv(4096).decode().split("\n"))
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.mark.parametrize("processes", ["2", "1"])  # a supervisor speaking for two; a process for itself
def test_systemd_hears_ready_watchdog_status_and_stopping(processes, env, target, notify, tmp_path) -> None:
    env = {**env, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"}  # a ping a second
    with worker(env, "--processes", processes, "--concurrency", "4", log_path=tmp_path / "worker.log") as proc:
        notify.read_until(lambda m: "READY=1" in m, 60)
        assert not any(line.startswith("WATCHDOG") for line in notify.messages[:notify.messages.index("READY=1")])
        assert run_cli(["submit", *[target.url(f"/ok?ms=100&n={i}") for i in range(200)]], env).returncode == 0
        notify.read_until(lambda m: any(line.startswith("STATUS=") and not line.startswith("STATUS=0.0 ")
                                        for line in m), 60)
        notify.read_until(lambda m: m.count("WATCHDOG=1") >= 3, 10)
        proc.send_signal(signal.SIGTERM)
        notify.read_until(lambda m: "STOPPING=1" in m, 20)
        assert proc.wait(40) == 0
    print("\n".join(notify.messages))  # the closing note's figures: pytest -s shows them
    status = [line for line in notify.messages if line.startswith("STATUS=") and "checks/s" in line]
    assert status and all(" in flight, " in line and "processes consuming" in line for line in status)
    assert f"{processes} of {processes} processes consuming" in status[-1]
    assert "NOTIFY_SOCKET" not in (tmp_path / "worker.log").read_text()


def test_a_stuck_worker_process_gets_no_watchdog_ping_and_prints_its_stacks(env, notify, tmp_path) -> None:
    env = {**env, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"}  # stuck: quiet for 1.5 s
    log_path = tmp_path / "worker.log"
    with worker(env, "--processes", "2", "--concurrency", "2", log_path=log_path) as proc:
        notify.read_until(lambda m: m.count("WATCHDOG=1") >= 2, 60)
        [stuck, _] = sorted(worker_children(proc.pid))
        os.kill(stuck, signal.SIGSTOP)  # its connection loop stops turning
        try:
            wait_until(lambda: f"worker process(es) {stuck} stuck" in log_path.read_text(), 20,
                       message="the supervisor to notice")
            notify.drain()
            pings = notify.messages.count("WATCHDOG=1")
            time.sleep(3)  # three ping intervals: the silence over that time is what is under test
            notify.drain()
            assert notify.messages.count("WATCHDOG=1") == pings, "pinged while a process was stuck"
        finally:
            os.kill(stuck, signal.SIGCONT)  # the SIGUSR1 the supervisor sent is delivered now
        notify.read_until(lambda m: m.count("WATCHDOG=1") > pings, 20)  # alive again: pings resume
        wait_until(lambda: "most recent call first" in log_path.read_text(), 20, message="its stacks")


def test_no_ready_while_the_broker_is_unreachable_but_systemd_hears_why(pg_url, queue_name, notify) -> None:
    dead_broker = f"amqp://guest:secret@127.0.0.1:{free_port()}//"
    env = {**runner_env(pg_url, dead_broker, queue_name), "NOTIFY_SOCKET": notify.path}
    with worker(env, "--processes", "1"):
        notify.read_until(lambda m: any(line.startswith("EXTEND_TIMEOUT_USEC=") for line in m), 30)
    assert "READY=1" not in notify.messages
    waiting = [line for line in notify.messages if line.startswith("STATUS=waiting:")]
    assert waiting and "unreachable" in waiting[0] and "secret" not in waiting[0]


def worker_children(pid: int) -> list[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = []
    for kid in kids:
        try:
            if b"spawn_main" in Path(f"/proc/{kid}/cmdline").read_bytes():
                out.append(int(kid))
        except OSError:
            pass
    return out


def test_children_that_keep_dying_end_the_supervisor_with_exit_1(env, tmp_path) -> None:
    log_path = tmp_path / "worker.log"
    with worker(env, "--processes", "2", "--concurrency", "2", log_path=log_path) as proc:
        killed: set[int] = set()

        def kill_children_until_it_gives_up() -> bool:
            for kid in worker_children(proc.pid):  # as the OOM killer would
                if kid not in killed:
                    os.kill(kid, signal.SIGKILL)
                    killed.add(kid)
            return proc.poll() is not None

        wait_until(kill_children_until_it_gives_up, 90, message="the supervisor to give up")
        assert proc.wait(60) == 1
    log = log_path.read_text()
    assert "5 worker processes died within 60 s; giving up (exit 1)" in log, log
    assert len(killed) >= 5


# ---------------------------------------------------------------------------- logs


def unreachable_env(pg_url: str, queue_name: str, **extra: str) -> dict[str, str]:
    """A worker that waits for RabbitMQ (a port nobody listens on), logging a warning a try."""
    return runner_env(pg_url, f"amqp://guest:secret@127.0.0.1:{free_port()}//", queue_name, **extra)


def test_under_journald_lines_carry_the_syslog_level_and_no_timestamp(pg_url, queue_name, tmp_path) -> None:
    path = tmp_path / "journal"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        env = unreachable_env(pg_url, queue_name, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
        proc = subprocess.Popen([sys.executable, "-m", "runner", "start", "--processes", "1"], env=env, cwd=ROOT,
                                stderr=stream, start_new_session=True)
        try:
            wait_until(lambda: "waiting for it" in path.read_text(), 30, message="a warning")
        finally:
            proc.kill()
            proc.wait()
    line = next(ln for ln in path.read_text().splitlines() if "waiting for it" in ln)
    assert line.startswith("<4>MainProcess[")  # <4>: warning; journald adds the time itself
    assert "secret" not in line and "***" in line


def test_json_logs_are_one_object_a_line(pg_url, queue_name, tmp_path) -> None:
    env = unreachable_env(pg_url, queue_name, URLTESTER_LOG_FORMAT="json")
    with worker(env, "--processes", "1", log_path=tmp_path / "log"):
        wait_until(lambda: "waiting for it" in (tmp_path / "log").read_text(), 30, message="a warning")
    entries = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    warning = next(e for e in entries if "waiting for it" in e["message"])
    assert warning["level"] == "warning" and warning["logger"] == "urltester.worker"
    assert warning["ts"].endswith("Z") and warning["pid"] > 0
    assert "secret" not in warning["message"]


def test_sigusr1_dumps_every_threads_stack_and_the_worker_carries_on(env, tmp_path) -> None:
    log_path = tmp_path / "log"
    with worker(env, "--processes", "1", "--concurrency", "3", log_path=log_path) as proc:
        wait_until(lambda: "consuming from" in log_path.read_text(), 60, message="the worker to consume")
        proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: log_path.read_text().count("Thread 0x") >= 3 + 2, 10, message="every thread's stack")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(40) == 0
    log = log_path.read_text()
    assert log.count("Thread 0x") >= 3 + 2  # the worker threads, the main thread, heartbeat, writer...
    assert "Current thread" in log and "pool.py" in log
