"""`runner dead list|show|requeue|purge` on a real RabbitMQ and PostgreSQL.

The dead letters are made the ways they are made in production: RabbitMQ dead-letters a
message a consumer rejected (its own ``x-death`` record), and a poison message carries our
reason header as the consumer's dead-letter publish writes it.
"""

from __future__ import annotations

import json

import amqp
import pytest
from kombu import Connection

from runner.taskq.broker import dead_queue_name
from tests.support.services import run_cli, runner_env, wait_until, worker

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
def env(pg_url, amqp_url, queue_name) -> dict[str, str]:
    return runner_env(pg_url, amqp_url, queue_name)


def reject_one(amqp_url: str, queue: str) -> None:
    """Take one message from the work queue and reject it: RabbitMQ dead-letters it."""
    with Connection(amqp_url) as conn:
        ch = conn.channel()
        msg = ch.basic_get(queue, no_ack=False)
        assert msg is not None
        ch.basic_reject(msg.delivery_info["delivery_tag"], requeue=False)


def publish_poison(amqp_url: str, queue: str, body: bytes, reason: str) -> None:
    with Connection(amqp_url) as conn:
        ch = conn.channel()
        ch.basic_publish(amqp.Message(body, application_headers={"x-urltester-reason": reason}),
                         exchange="", routing_key=dead_queue_name(queue))


def depth(env) -> dict:
    return json.loads(run_cli(["status", "--json"], env).stdout)["queue"]


@pytest.mark.e2e
def test_dead_letters_listed_with_reasons_shown_masked_replayed_and_purged(env, amqp_url, queue_name, target) -> None:
    url = target.url("/ok").replace("http://", "http://alice:hunter2@")
    sub = run_cli(["submit", url], env)  # no worker yet: the message waits in the queue
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.split("\t")[0]
    reject_one(amqp_url, queue_name)
    publish_poison(amqp_url, queue_name, b"{not json \x1b[31m", "message is not JSON: Expecting property name")
    wait_until(lambda: depth(env)["dead"] == 2, 10, message="two dead letters")

    listing = run_cli(["dead", "list"], env)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.startswith(f"2 dead-lettered messages in {queue_name}.dead")
    assert f"job {job} http://alice:***@127.0.0.1" in listing.stdout
    assert "reason: RabbitMQ: rejected" in listing.stdout
    assert "reason: message is not JSON" in listing.stdout and "not a task message" in listing.stdout
    assert "hunter2" not in listing.stdout and "\x1b" not in listing.stdout
    rows = [json.loads(line) for line in run_cli(["dead", "list", "--json"], env).stdout.splitlines()]
    by_reason = {r["reason"].split(":")[0]: r for r in rows}
    check, poison = by_reason["RabbitMQ"], by_reason["message is not JSON"]
    assert check["calls"][0]["job"] == int(job) and poison["calls"] is None
    assert depth(env)["dead"] == 2  # listing took nothing away

    show = run_cli(["dead", "show", check["id"]], env)
    assert show.returncode == 0, show.stderr
    assert "reason        RabbitMQ: rejected" in show.stdout and "x-death" in show.stdout
    assert "alice:***@" in show.stdout and "hunter2" not in show.stdout
    shown_poison = run_cli(["dead", "show", poison["id"]], env).stdout
    assert "\\x1b[31m" in shown_poison and "\x1b" not in shown_poison
    missing = run_cli(["dead", "show", "0123456789ab"], env)
    assert missing.returncode == 1 and "no dead-lettered message with id '0123456789ab'" in missing.stderr

    replay = run_cli(["dead", "requeue", check["id"]], env)
    assert replay.returncode == 0 and f"re-published 1 message to {queue_name}" in replay.stdout
    assert depth(env)["dead"] == 1 and depth(env)["ready"] == 1
    with worker(env, "--processes", "1", "--concurrency", "2"):
        wait_until(lambda: json.loads(run_cli(["results", "--format", "json"],
                                              env).stdout.splitlines()[0])["state"] == "done",
                   30, message="the replayed job checked")
    [row] = [json.loads(line) for line in run_cli(["results", "--format", "json"], env).stdout.splitlines()]
    assert row["id"] == int(job) and row["outcome"] == "ok"

    not_there = run_cli(["dead", "purge", check["id"], poison["id"]], env)
    assert not_there.returncode == 1 and f"not in the dead-letter queue: {check['id']}" in not_there.stderr
    assert depth(env)["dead"] == 0  # the poison one was there, and is gone
    assert run_cli(["dead", "purge"], env).returncode == 2  # neither ids nor --all
    assert run_cli(["dead", "purge", "--all"], env).stdout == "deleted 0 dead-lettered messages\n"


def test_dead_commands_need_rabbitmq(sqlite_url) -> None:
    out = run_cli(["dead", "list"], runner_env(sqlite_url, None))
    assert out.returncode == 2 and "in-memory broker (memory://) keeps no dead letters" in out.stderr


def test_a_replayed_message_loses_its_death_record_and_counts_replays(env, amqp_url, queue_name, target) -> None:
    run_cli(["submit", target.url("/ok")], env)
    reject_one(amqp_url, queue_name)
    [row] = [json.loads(line) for line in run_cli(["dead", "list", "--json"], env).stdout.splitlines()]
    assert run_cli(["dead", "requeue", "--all"], env).returncode == 0
    with Connection(amqp_url) as conn:
        msg = conn.channel().basic_get(queue_name, no_ack=True)
    assert "x-death" not in msg.headers and msg.headers["x-urltester-replayed"] == 1
    assert run_cli(["dead", "list", "--json"], env).stdout == ""
    assert row["reason"] == "RabbitMQ: rejected"
