"""`runner import`, results, prune and requeue on the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import io
import json
import math
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from kombu import Connection

from db import JobFilter, NewJob, ResultRecord, open_store, utcnow
from db.store import COPY_FROM
from runner.errors import BrokerError
from runner.jobs.importer import Importer, Source
from runner.jobs.intake import CHUNK, FIRST_CHUNK
from runner.jobs.runtime import Runtime
from runner.jobs.settings import from_env
from runner.taskq.broker import AmqpBroker
from tests.support.services import run_cli, runner_env, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
def env(pg_url, amqp_url, queue_name) -> dict[str, str]:
    return runner_env(pg_url, amqp_url, queue_name)


@pytest.fixture
def store(pg_url):
    s = open_store(pg_url)
    yield s
    s.close()


def count(store, sql: str, *params) -> int:
    with store.dialect.transaction() as cur:
        cur.execute(sql, params)
        return cur.fetchone()[0]


def messages(n_jobs: int) -> int:
    """Messages for n jobs: chunks of CHUNK, 10 calls to a message."""
    full, rest = divmod(n_jobs, CHUNK)
    return full * (CHUNK // 10) + math.ceil(rest / 10)


def test_import_records_every_job_then_publishes_it_packed(env, store, amqp_url, queue_name, tmp_path) -> None:
    f = tmp_path / "big.txt"
    lines = [f"https://site{i % 97}.test/page/{i}" for i in range(12_000)]
    lines[10] = "gopher://old.test/"
    lines[11_000] = lines[5]  # a duplicate
    f.write_text("\n".join(lines) + "\n")
    out = run_cli(["import", str(f), "--batch", "big", "--expect-status", "200"], env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.startswith(f"{f}:11: unsupported scheme 'gopher'")
    assert "11,998 jobs queued in batch 'big'" in out.stdout
    assert count(store, "SELECT count(*) FROM jobs") == 11_998
    assert count(store, "SELECT count(*) FROM jobs WHERE published_at IS NULL OR publish_error IS NOT NULL") == 0
    assert count(store, "SELECT size FROM batches WHERE name = 'big'") == 11_998
    assert count(store, "SELECT count(*) FROM jobs WHERE options = %s::jsonb", '{"expect_status": "200"}') == 11_998
    assert AmqpBroker(amqp_url, queue_name).ping().ready == messages(11_998)
    with Connection(amqp_url) as conn:  # a message carries checks of recorded jobs
        msg = conn.channel().basic_get(queue_name, no_ack=True)
        calls = json.loads(msg.body)["calls"]
    assert len(calls) == 10
    for call in calls:
        job_id, url, options = call["args"]
        assert call["task"] == "check" and options == {"expect_status": "200"}
        assert store.get_job(job_id).url == url

    again = run_cli(["import", str(f), "--batch", "big2", "--idempotency-key", "k"], env)
    rerun = run_cli(["import", str(f), "--batch", "big2", "--idempotency-key", "k"], env)
    assert "0 jobs queued" in rerun.stdout and "11,998 already recorded" in rerun.stdout, again.stdout
    assert count(store, "SELECT count(*) FROM jobs") == 2 * 11_998


def test_rabbitmq_down_at_the_start_exits_3_with_nothing_recorded(pg_url, store, queue_name) -> None:
    env = runner_env(pg_url, "amqp://guest:guest@127.0.0.1:1//", queue_name, URLTESTER_PUBLISH_TIMEOUT="1")
    out = run_cli(["import", "-"], env, input="https://a.test/\n")
    assert out.returncode == 3 and "unreachable" in out.stderr
    assert count(store, "SELECT count(*) FROM jobs") == 0


class FailingAfter:
    """A broker that confirms ``ok`` publishes, then fails as a lost RabbitMQ would."""

    def __init__(self, real: AmqpBroker, ok: int) -> None:
        self.real, self.ok = real, ok

    def publish(self, batch, **kwargs) -> None:
        if self.ok <= 0:
            raise BrokerError("RabbitMQ at test is unreachable: connection reset")
        self.ok -= 1
        self.real.publish(batch, **kwargs)

    def close(self) -> None:
        self.real.close()


def test_rabbitmq_lost_mid_import_records_everything_and_marks_the_rest(
        pg_url, amqp_url, queue_name, store, monkeypatch) -> None:
    settings = from_env({}, database_url=pg_url, broker_url=amqp_url, queue=queue_name)
    data = "".join(f"https://a.test/{i}\n" for i in range(12_000)).encode()
    rt = Runtime(settings)  # its broker is real: the check before recording passes
    rt.app.broker = FailingAfter(rt.broker, 1)  # then the first chunk's publish, then a lost RabbitMQ
    try:
        report = Importer(rt, idempotency_key="night", publishers=1).run(Source("n.txt", io.BytesIO(data)))
    finally:
        rt.close()
    assert report.recorded == 12_000 and report.published == FIRST_CHUNK
    assert report.unpublished == 12_000 - FIRST_CHUNK
    assert "connection reset" in report.broker_error
    assert count(store,
                 "SELECT count(*) FROM jobs WHERE publish_error LIKE 'not published: %%'") == 12_000 - FIRST_CHUNK

    # The cron retry (same key) records nothing new and publishes what was left.
    env = runner_env(pg_url, amqp_url, queue_name)
    out = run_cli(["import", "-", "--idempotency-key", "night"], env, input=data.decode())
    assert out.returncode == 0, out.stderr
    assert "0 jobs queued" in out.stdout and f"{12_000 - FIRST_CHUNK:,} re-published" in out.stdout
    assert count(store, "SELECT count(*) FROM jobs") == 12_000
    assert count(store, "SELECT count(*) FROM jobs WHERE published_at IS NULL OR publish_error IS NOT NULL") == 0
    assert AmqpBroker(amqp_url, queue_name).ping().ready == messages(12_000)


def test_requeue_stale_republishes_lost_messages(env, store, amqp_url, queue_name) -> None:
    out = run_cli(["import", "-"], env, input="".join(f"https://a.test/{i}\n" for i in range(25)))
    assert out.returncode == 0
    broker = AmqpBroker(amqp_url, queue_name)
    assert broker.ping().ready == 3
    broker.purge()  # the messages are lost; the jobs are still queued in PostgreSQL
    assert run_cli(["requeue", "--stale", "1h"], env).stdout.strip() == "re-published 0 jobs"
    out = run_cli(["requeue", "--stale", "0s"], env)
    assert out.returncode == 0 and out.stdout.strip() == "re-published 25 jobs"
    assert broker.ping().ready == 3
    assert run_cli(["requeue", "--stale", "later"], env).returncode == 2


def test_wait_with_a_worker_and_junit_from_postgres(env, target, tmp_path) -> None:
    f = tmp_path / "ci.jsonl"
    f.write_text("\n".join(json.dumps(row) for row in [
        {"url": target.url("/ok")},
        {"url": target.url("/status/500")},
        {"url": target.url("/status/404"), "expect_status": "404"},
        {"url": target.url("/ok?ms=200"), "max_ms": 50},
    ]) + "\n")
    with worker(env, "--processes", "1", "--concurrency", "8"):
        out = run_cli(["import", str(f), "--batch", "ci", "--wait", "--wait-timeout", "60"], env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "checked 4 of 4: ok 2, failed 2 (" in out.stdout
    assert "http_error 1" in out.stdout and "assertion_failed 1" in out.stdout
    junit = run_cli(["results", "--batch", "ci", "--format", "junit"], env)
    suite = ET.fromstring(junit.stdout).find("testsuite")
    assert suite.get("tests") == "4" and suite.get("failures") == "2"
    failed = {c.get("name"): c.find("failure").get("type") for c in suite if c.find("failure") is not None}
    assert failed == {target.url("/status/500"): "http_error", target.url("/ok?ms=200"): "assertion_failed"}


def test_prune_on_postgres_deletes_old_done_jobs_in_chunks(env, store) -> None:
    old = utcnow() - timedelta(days=40)
    batch = store.create_batch("old", now=old)
    ids = store.insert_jobs(batch.id, [NewJob(f"https://a.test/{i}") for i in range(7)], now=old)
    store.store_results([ResultRecord(job_id=i, outcome="ok", ok=True, status_code=200, total_ms=1.0, attempts=1,
                                      bytes=0, checked_at=old) for i in ids[:5]])
    fresh = store.insert_jobs(None, [NewJob("https://b.test/")])
    store.store_results([ResultRecord(job_id=fresh[0], outcome="ok", ok=True, status_code=200, total_ms=1.0, attempts=1,
                                      bytes=0, checked_at=utcnow())])
    assert store.prune(timedelta(days=30), chunk=2) == 5
    left = {v.id for v in store.iter_jobs(JobFilter())}
    assert left == {*ids[5:], *fresh}  # queued ones are never pruned, nor recent ones
    out = run_cli(["prune", "--older-than", "30d", "--chunk", "2"], env)
    assert out.returncode == 0 and "pruned 0 done jobs" in out.stdout


@pytest.mark.parametrize("filler", [0, COPY_FROM], ids=["insert", "copy"])
def test_recording_keeps_backslashes_tabs_and_unicode_intact(store, filler) -> None:
    jobs = [NewJob("https://a.test/a\\b\\\\c", '{"body_contains":"tab\\there \\\\ é"}'),
            NewJob("https://b.test/é", "{}")]
    ids = store.insert_jobs(None, jobs + [NewJob(f"https://c.test/{i}", {}) for i in range(filler)])
    views = [store.get_job(i) for i in ids[:2]]
    assert [v.url for v in views] == ["https://a.test/a\\b\\\\c", "https://b.test/é"]
    assert views[0].options == {"body_contains": "tab\there \\ é"} and views[1].options == {}
