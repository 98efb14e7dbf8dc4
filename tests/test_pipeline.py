"""The core pipeline on the real services: submit → RabbitMQ → `runner start` → PostgreSQL."""

import json
import shutil
import signal
import subprocess
import threading
import time
from urllib.parse import urlsplit

import pytest
from kombu import Connection

from db import open_store
from runner.cli.worker import check_service
from runner.jobs.runtime import Runtime
from runner.jobs.settings import Settings
from runner.taskq.app import Call, encode
from runner.taskq.broker import AmqpBroker, Delivery, dead_queue_name
from runner.taskq.pool import PoolOptions, WorkerProcess
from tests.faults.proxy import Proxy
from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e]


@pytest.fixture
def env(pg_url, amqp_url, queue_name) -> dict[str, str]:
    return runner_env(pg_url, amqp_url, queue_name)


def results(env) -> list[dict]:
    out = run_cli(["results", "--format", "json"], env)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_submit_through_rabbitmq_to_a_worker_and_back(env, target, tmp_path) -> None:
    with worker(env, "--processes", "2", "--concurrency", "4", log_path=tmp_path / "worker.log"):
        out = run_cli(["submit", target.url("/ok"), target.url("/status/500"), target.url("/flaky?key=a"),
                       "--wait", "--wait-timeout", "60"], env)
        assert out.returncode == 1, out.stdout + out.stderr  # one check failed
        rows = {r["url"]: r for r in results(env)}
        assert rows[target.url("/ok")]["outcome"] == "ok"
        assert rows[target.url("/status/500")]["outcome"] == "http_error"
        flaky = rows[target.url("/flaky?key=a")]
        assert flaky["outcome"] == "ok" and flaky["attempts"] == 2  # 503 retried by tenacity
        status = run_cli(["status"], env).stdout
        assert "2 processes alive" in status and "3 done" in status
    log = (tmp_path / "worker.log").read_text()
    assert "guest:guest" not in log


def test_a_chunked_body_trickled_past_the_deadline_is_stored_with_the_bytes_that_came(env, target) -> None:
    # 4 bytes a chunk every 0.2 s from a real HTTP server, never ending: the stored result
    # names the deadline and counts what came before it (it said bytes=0).
    url = target.url("/trickle-chunked?key=stored")
    with worker(env, "--processes", "1", "--concurrency", "2"):
        out = run_cli(["submit", url, "--deadline", "2", "--retries", "1", "--wait", "--wait-timeout", "60"], env)
    assert out.returncode == 1, out.stdout + out.stderr
    [row] = results(env)
    assert row["outcome"] == "deadline_exceeded"
    assert row["error"] == "deadline of 2 s exceeded while reading the body"
    log = target.sent["stored"]
    assert row["bytes"] > 0 and row["bytes"] % 4 == 0
    # within one chunk of what the server had sent by 2 s after its first chunk
    assert row["bytes"] <= log[-1][1] and row["bytes"] >= max(
        (sent for at, sent in log if at <= log[0][0] + 1.9), default=0) - 4, (row["bytes"], log)


def test_submit_without_a_broker_marks_the_jobs_and_exits_3(pg_url, queue_name, target) -> None:
    env = runner_env(pg_url, "amqp://guest:guest@127.0.0.1:1//", queue_name, URLTESTER_PUBLISH_TIMEOUT="1")
    out = run_cli(["submit", target.url("/ok")], env, timeout=120)
    assert out.returncode == 3 and "unreachable" in out.stderr
    [row] = results(env)
    assert row["state"] == "queued" and "unreachable" in row["publish_error"]


def test_a_large_submit_without_a_broker_keeps_every_job_and_says_how_to_send_them(pg_url, amqp_url, queue_name,
                                                                                  target) -> None:
    """Jobs are recorded and published a chunk at a time; when the broker fails, the chunks
    after the failed one are still recorded (unsent), so nothing typed is lost."""
    env = runner_env(pg_url, "amqp://guest:guest@127.0.0.1:1//", queue_name, URLTESTER_PUBLISH_TIMEOUT="1")
    urls = [target.url(f"/ok?n={i}") for i in range(1200)]  # several chunks
    out = run_cli(["submit", *urls], env, timeout=120)
    assert out.returncode == 3 and "1200 job(s) recorded" in out.stderr and "requeue --stale 0s" in out.stderr
    rows = results(env)
    assert len(rows) == 1200 and {r["state"] for r in rows} == {"queued"}
    assert all("unreachable" in r["publish_error"] for r in rows)
    sent = run_cli(["requeue", "--stale", "0s"], runner_env(pg_url, amqp_url, queue_name))  # the advice works
    assert sent.returncode == 0, sent.stderr
    assert AmqpBroker(amqp_url, queue_name).ping().ready == 120  # 1,200 calls, 10 to a message


def queue_messages(queue: str) -> tuple[int, int] | None:
    """(ready, unacked) of a queue on the default vhost, as RabbitMQ counts them."""
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to see unacked messages"
    out = subprocess.run([ctl, "list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                          "messages_unacknowledged"], capture_output=True, text=True, timeout=30, check=True).stdout
    for line in out.splitlines():
        name, *counts = line.split()
        if name == queue and len(counts) == 2:
            return int(counts[0]), int(counts[1])
    return None


def test_redelivered_message_leaves_exactly_one_result(env, pg_url, amqp_url, queue_name, target) -> None:
    store = open_store(pg_url)
    [job] = store.insert_jobs(None, [__import__("db").NewJob(target.url("/ok"))])
    body = encode([Call("check", (job, target.url("/ok"), {}))])
    broker = AmqpBroker(amqp_url, queue_name)
    broker.publish([body, body])  # the same message twice, as after a lost ack
    with worker(env, "--processes", "1", "--concurrency", "4"):
        wait_until(lambda: store.get_job(job).state == "done", 30, message="the job to be done")
        # The second copy is checked or skipped (the job is done), then acked: nothing left.
        wait_until(lambda: queue_messages(queue_name) == (0, 0), 30, interval=0.5,
                   message="both copies acked (none ready or unacked)")
    with store.dialect.transaction() as cur:
        cur.execute("SELECT count(*) FROM results WHERE job_id = %s", (job,))
        assert cur.fetchone()[0] == 1
    store.close()


def test_poison_is_dead_lettered_with_its_reason_and_the_worker_carries_on(env, pg_url, amqp_url, queue_name,
                                                                           target) -> None:
    broker = AmqpBroker(amqp_url, queue_name)
    broker.publish([b"{not json", encode([Call("no_such_task", ())]),
                    encode([Call("check", ("not-an-id", target.url("/ok"), {"method": "BREW"}))])])
    with worker(env, "--processes", "1", "--concurrency", "2"):
        wait_until(lambda: broker.ping().dead == 3, 30, message="three dead-lettered messages")
        out = run_cli(["submit", target.url("/ok"), "--wait", "--wait-timeout", "30"], env)
        assert out.returncode == 0, out.stdout + out.stderr
    reasons = sorted(h["x-urltester-reason"] for h, _ in broker.get_dead())
    assert any("not JSON" in r for r in reasons)
    assert any("unknown task 'no_such_task'" in r for r in reasons)
    assert any("BREW" in r or "method" in r for r in reasons)


def test_sigterm_finishes_in_flight_checks_and_exits_0(env, target) -> None:
    slow = [target.url(f"/ok?ms=1500&n={i}") for i in range(4)]
    run_cli(["submit", *slow], env)
    with worker(env, "--processes", "1", "--concurrency", "4", "--shutdown-timeout", "10") as proc:
        wait_until(lambda: sum(target.hits.values()) >= 4, 20, message="the checks to start")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert time.monotonic() - started < 10
    rows = results(env)
    assert [r["state"] for r in rows] == ["done"] * 4


def test_queue_declared_durable_quorum_with_dead_letter(env, amqp_url, queue_name) -> None:
    AmqpBroker(amqp_url, queue_name).ping()
    with Connection(amqp_url) as conn:
        ch = conn.channel()
        # passive declares succeed only if both queues exist
        assert ch.queue_declare(queue_name, passive=True).queue == queue_name
        assert ch.queue_declare(dead_queue_name(queue_name), passive=True)


def test_a_storm_of_stop_signals_still_stops_the_pool_in_time(env, target) -> None:
    """systemd sends SIGTERM to every process of the unit while the supervisor passes it on
    too: workers get several at once. None may deadlock in its signal handler."""
    import os

    run_cli(["submit", *[target.url(f"/ok?n={i}") for i in range(200)]], env)
    with worker(env, "--processes", "2", "--concurrency", "8", "--shutdown-timeout", "10") as proc:
        wait_until(lambda: sum(target.hits.values()) >= 50, 30, message="checks to run")
        started = time.monotonic()
        for _ in range(400):  # spread out, so some land while a handler is running
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(0.0005)  # the spread of the storm is what is under test, not a wait
        assert proc.wait(25) == 0
        assert time.monotonic() - started < 15


def test_a_worker_thread_checks_on_while_its_results_wait_for_the_commit_and_acks_after(
        pg_url, amqp_url, queue_name, target, monkeypatch) -> None:
    """The writer commits results in batches; a worker thread hands its result over and takes
    its next call at once (throughput), yet the message is acked only after the commit."""
    settings = Settings(database_url=pg_url, broker_url=amqp_url, queue=queue_name)
    submitter = Runtime(settings)
    submitter.submit([target.url(f"/ok?n={i}") for i in range(3)])  # one message of three calls
    acked: list[float] = []
    ack = Delivery.ack
    monkeypatch.setattr(Delivery, "ack", lambda self: (acked.append(time.monotonic()), ack(self)))
    worker_ = WorkerProcess(check_service(settings), PoolOptions(concurrency=1, processes=1))
    commit = threading.Event()
    store_results = worker_.service.runtime.store.store_results

    committing = threading.Event()
    handed: list[int] = []
    add = worker_.service.runtime.writer.add

    def slow_commit(records, **kwargs):
        if records:
            committing.set()
            commit.wait(30)  # a database that takes its time
        return store_results(records, **kwargs)

    def counted_add(record):
        future = add(record)
        handed.append(record.job_id)
        return future

    monkeypatch.setattr(worker_.service.runtime.store, "store_results", slow_commit)
    monkeypatch.setattr(worker_.service.runtime.writer, "add", counted_add)
    thread = threading.Thread(target=worker_.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: target.hits.get("/ok", 0) == 3, 20, message="the one thread to check all three URLs")
        wait_until(lambda: len(handed) == 3 and committing.is_set(), 20,
                   message="all three results handed to the writer, held in its commit")
        assert acked == [] and submitter.store.counts().done == 0  # nothing committed: nothing acked
        commit.set()
        wait_until(lambda: submitter.store.counts().done == 3, 20, message="the three results to be stored")
        wait_until(lambda: len(acked) == 1, 10, message="the message to be acked")
        assert submitter.broker.ping().ready == 0
    finally:
        commit.set()
        worker_.stop.set()
        thread.join(30)
        submitter.close()


def test_hold_budget_option_hands_on_calls_that_waited_and_checks_each_once(env, target, tmp_path) -> None:
    """`runner start --hold-budget 1`: one thread and 300 ms checks, so most calls of a
    20-call batch wait past 1 s; they are handed on in new messages, never checked twice."""
    run_cli(["submit", *[target.url(f"/ok?ms=300&n={i}") for i in range(20)]], env)
    log_path = tmp_path / "worker.log"
    with worker(env, "--processes", "1", "--concurrency", "1", "--hold-budget", "1", log_path=log_path):
        wait_until(lambda: [r["state"] for r in results(env)] == ["done"] * 20, 60, message="20 jobs done")
    assert "handing them on" in log_path.read_text()
    assert target.hits["/ok"] == 20


@pytest.mark.parametrize("service", ["database", "broker"])
def test_a_worker_started_before_its_service_waits_for_it_then_works(service, pg_url, amqp_url, queue_name, target,
                                                                     tmp_path) -> None:
    """Hosts boot services in any order: `runner start` waits (with backoff, logged) for an
    unreachable database or broker instead of exiting, and works once it is there."""
    parts = urlsplit(pg_url if service == "database" else amqp_url)
    with Proxy(parts.hostname or "127.0.0.1", parts.port or (5432 if service == "database" else 5672)) as proxy:
        proxied = parts._replace(netloc=parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}"
                                 if "@" in parts.netloc else f"127.0.0.1:{proxy.port}").geturl()
        env = (runner_env(proxied, amqp_url, queue_name) if service == "database"
               else runner_env(pg_url, proxied, queue_name))
        proxy.down = True  # accepts, then drops at once: a service not up yet
        log_path = tmp_path / "worker.log"
        with worker(env, "--processes", "1", "--concurrency", "2", log_path=log_path) as proc:
            wait_until(lambda: log_path.read_text().count("waiting for it") >= 2, 30, message="the worker to wait")
            assert proc.poll() is None
            proxy.down = False
            out = run_cli(["submit", target.url("/ok"), "--wait", "--wait-timeout", "60"],
                          runner_env(pg_url, amqp_url, queue_name))
            assert out.returncode == 0, out.stdout + out.stderr
        assert "Traceback" not in log_path.read_text()
