"""The sender runs where the issue says: in every ``runner start`` process and in ``runner
serve`` (real PostgreSQL and RabbitMQ): a change queued by a transaction reaches the
webhook with nothing else running."""

from __future__ import annotations

import pytest

from db import alerts as outbox
from db import open_store
from tests.alerts.test_outbox import change, record
from tests.support.services import runner_env, wait_until, worker
from tests.support.webhook import Receiver

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]


def queue_one(pg_url: str, receiver: Receiver, n: int) -> None:
    store = open_store(pg_url)
    try:
        if outbox.get_alert(store.dialect, "ops") is None:
            outbox.add_alert(store.dialect, "ops", receiver.url)
        record(store, [change(n, "new_failure", store.create_batch(f"b{n}").id)])
    finally:
        store.close()


@pytest.mark.rabbitmq
def test_runner_start_delivers_the_outbox(pg_url: str, amqp_url: str, queue_name: str, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    with Receiver() as receiver:
        queue_one(pg_url, receiver, 1)
        with worker(env, "--processes", "1", "--concurrency", "2", log_path=tmp_path / "worker.log"):
            wait_until(lambda: receiver.count() == 1, 60, message="the worker's sender to deliver")
        assert receiver.titles() == ["urltester: new_failure: http://site.test/page/1"]


@pytest.mark.rabbitmq
def test_runner_start_deny_private_refuses_a_loopback_target(pg_url: str, amqp_url: str, queue_name: str,
                                                             tmp_path) -> None:
    from tests.support.services import run_cli

    env = runner_env(pg_url, amqp_url, queue_name)
    with Receiver() as receiver:
        queue_one(pg_url, receiver, 4)
        with worker(env, "--processes", "1", "--concurrency", "2", "--deny-private", log_path=tmp_path / "worker.log"):
            wait_until(lambda: "given up: 1" in run_cli(["alerts", "list"], env).stdout, 60,
                       message="the worker's sender to refuse the target")
        assert receiver.requests == 0
    listed = run_cli(["alerts", "list"], env).stdout
    assert "refused by the address policy" in listed and "loopback" in listed


def test_runner_serve_delivers_the_outbox(pg_url: str, tmp_path) -> None:
    from tests.api.conftest import serve

    env = runner_env(pg_url, None)
    with Receiver() as receiver:
        queue_one(pg_url, receiver, 2)
        with serve(env, tmp_path / "serve.log"):
            wait_until(lambda: receiver.count() == 1, 60, message="runner serve's sender to deliver")
        assert receiver.titles() == ["urltester: new_failure: http://site.test/page/2"]


def test_runner_serve_metrics_show_the_alerts(pg_url: str, tmp_path) -> None:
    from tests.api.conftest import serve

    env = runner_env(pg_url, None)
    with Receiver() as receiver:
        queue_one(pg_url, receiver, 3)
        with serve(env, tmp_path / "serve.log") as server:
            wait_until(lambda: receiver.count() == 1, 60, message="runner serve's sender to deliver")
            with server.client(server.token("metrics")) as c:
                text = c.get("/metrics").text
    assert 'urltester_alerts_sent_total{alert="ops",result="sent"} 1.0' in text
    assert "urltester_alerts_outbox " in text
