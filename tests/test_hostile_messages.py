"""Hostile broker messages on the real RabbitMQ: each is dead-lettered with a reason a person
can read, and the worker keeps its connection, its memory and the real jobs around them.

The worker here is the real consumer pool (:class:`WorkerProcess`) in this process, with a
task that only records its calls, so what is measured is the message path alone.
"""

from __future__ import annotations

import bz2
import lzma
import resource
import subprocess
import sys
import threading
import zlib
from typing import Any

import amqp
import pytest

from runner.taskq.app import App, Call, encode
from runner.taskq.broker import AmqpBroker, Delivery
from runner.taskq.pool import PoolOptions, PoolStats, WorkerProcess
from tests.support.services import wait_until

pytestmark = [pytest.mark.rabbitmq]

BOMB = bz2.compress(bytes(64 << 20))  # 79 bytes that kombu would inflate to 64 MiB


class RecordingService:
    """The application side of the pool, reduced to remembering which calls ran."""

    name = "hostile-test"
    give_back_on: tuple[type[BaseException], ...] = ()

    def __init__(self, broker: AmqpBroker) -> None:
        self.broker = broker
        self.app = App(broker)
        self.done: list[int] = []
        self.lock = threading.Lock()

        @self.app.task(name="job")
        def job(n: int) -> None:
            with self.lock:
                self.done.append(n)

    def warm_up(self) -> None:
        pass

    def beat(self, stats: PoolStats) -> None:
        pass

    def stopped(self) -> None:
        pass


def run_worker(broker: AmqpBroker) -> tuple[RecordingService, WorkerProcess, threading.Thread]:
    service = RecordingService(broker)
    worker = WorkerProcess(service, PoolOptions(concurrency=4, processes=1, shutdown_timeout=5))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return service, worker, thread


def stop(worker: WorkerProcess, thread: threading.Thread) -> None:
    worker.stop.set()
    thread.join(20)
    assert not thread.is_alive()


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


HOSTILE: list[tuple[str, bytes, dict[str, Any], str]] = [
    ("bz2 bomb", BOMB, {"compression": "application/x-bz2"}, "inflates (application/x-bz2) to more than"),
    ("invalid bz2", b"not bz2 at all", {"compression": "application/x-bz2"}, "not valid application/x-bz2 data"),
    ("invalid gzip", b"\x1f\x8b garbage", {"compression": "application/x-gzip"}, "not valid application/x-gzip data"),
    ("invalid lzma", b"garbage", {"compression": "application/x-lzma"}, "not valid application/x-lzma data"),
    ("unknown codec", b"{}", {"compression": "application/x-rot13"},
     "compression 'application/x-rot13' is not supported"),
    ("deep JSON", b"[" * 100_000, {}, "nested more than 32 levels"),
    ("garbage", b"\xff\xfe\x00garbage", {}, "not JSON"),
    ("two bz2 streams", bz2.compress(b"{}") + BOMB, {"compression": "bzip2"}, "data after its bzip2 stream"),
]


def test_hostile_messages_are_dead_lettered_with_reasons_between_real_jobs(amqp_url, queue_name) -> None:
    broker = AmqpBroker(amqp_url, queue_name)
    broker.publish([encode([Call("job", (0,))])])
    for n, (_, body, headers, _) in enumerate(HOSTILE, start=1):
        broker.publish([body], headers=headers)
        broker.publish([encode([Call("job", (n,))])])
    # Valid messages that travel compressed are read as before.
    broker.publish([zlib.compress(encode([Call("job", (100,))]))], headers={"compression": "application/x-gzip"})
    broker.publish([lzma.compress(encode([Call("job", (101,))]))], headers={"compression": "xz"})
    before = rss_mib()
    service, worker, thread = run_worker(broker)
    try:
        wait_until(lambda: broker.ping().dead == len(HOSTILE), 30, message="every hostile message dead-lettered")
        wait_until(lambda: len(service.done) == len(HOSTILE) + 3, 30, message="every real job done")
        assert sorted(service.done) == [*range(len(HOSTILE) + 1), 100, 101]  # each once
        assert broker._generation == 0, "the worker reconnected: a message was taken for a lost connection"
        assert thread.is_alive()
        assert rss_mib() - before < 40, "a message was inflated beyond the size limit"
    finally:
        stop(worker, thread)
    reasons = [headers["x-urltester-reason"] for headers, _ in broker.get_dead()]
    for name, _, _, expected in HOSTILE:
        assert any(expected in reason for reason in reasons), (name, reasons)
    broker.close()


def test_a_dead_letter_queue_that_refuses_the_publish_does_not_end_the_worker(amqp_url, queue_name) -> None:
    policy = f"reject-{queue_name}"
    broker = AmqpBroker(amqp_url, queue_name)
    broker.ping()  # declares the queues
    subprocess.run(["rabbitmqctl", "set_policy", "--apply-to", "queues", policy, f"^{queue_name}\\.dead$",
                    '{"max-length":0,"overflow":"reject-publish"}'], check=True, capture_output=True, timeout=30)
    try:
        broker.publish([b"{not json", encode([Call("job", (1,))])])
        service, worker, thread = run_worker(broker)
        try:
            wait_until(lambda: service.done == [1], 30, message="the real job after the poison")
            wait_until(lambda: broker.ping().ready == 0, 10, message="the poison to leave the work queue")
            assert thread.is_alive() and broker._generation == 0
        finally:
            stop(worker, thread)
    finally:
        subprocess.run(["rabbitmqctl", "clear_policy", policy], capture_output=True, timeout=30)
        broker.close()


class _Channel:
    """What a delivery's channel was asked to do."""

    def __init__(self, nack: bool = False) -> None:
        self.nack = nack
        self.done: list[tuple[str, int]] = []

    def basic_ack(self, tag: int) -> None:
        self.done.append(("ack", tag))

    def basic_reject(self, tag: int, requeue: bool) -> None:
        self.done.append(("requeue" if requeue else "reject", tag))

    def basic_publish_confirm(self, message: amqp.Message, exchange: str, routing_key: str) -> None:
        if self.nack:
            raise amqp.exceptions.MessageNacked()
        self.done.append(("publish", 0))


def _delivery(broker: AmqpBroker, channel: _Channel) -> Delivery:
    msg = amqp.Message(encode([Call("job", (1,)), Call("job", (2,))]))
    msg.channel = channel
    msg.delivery_info = {"delivery_tag": 7, "redelivered": False}
    return Delivery(broker, msg, broker._generation)


def test_a_refused_hand_on_requeues_the_message_instead_of_acking_it() -> None:
    """Acking after a nacked hand-on would lose the calls that were to be handed on."""
    broker = AmqpBroker("amqp://guest:guest@127.0.0.1:5672//", "unused")
    channel = _Channel()
    delivery = _delivery(broker, channel)
    delivery.hand_on(encode([Call("job", (2,))]))
    delivery.ack()
    broker._run_actions(broker._generation, _Channel(nack=True))
    assert channel.done == [("requeue", 7)]


def test_a_header_table_too_deep_for_py_amqp_costs_a_reconnect_not_the_process(amqp_url, queue_name) -> None:
    """py-amqp parses header tables recursively: one nested 3,000 deep (RabbitMQ takes it)
    raised RecursionError out of drain_events and ended the connection thread."""
    broker = AmqpBroker(amqp_url, queue_name)
    broker.ping()
    headers: dict[str, Any] = {}
    inner = headers
    for _ in range(3000):
        inner["a"] = {}
        inner = inner["a"]
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # only so that py-amqp can write it
    try:
        conn.channel().basic_publish(amqp.Message(encode([Call("job", (1,))]), application_headers=headers),
                                     exchange="", routing_key=queue_name)
    finally:
        sys.setrecursionlimit(limit)
        conn.close()
    service, worker, thread = run_worker(broker)
    try:
        wait_until(lambda: broker._generation >= 1, 20, message="the worker to reconnect")
        assert thread.is_alive()
    finally:
        stop(worker, thread)
    broker.close()
