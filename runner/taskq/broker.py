"""RabbitMQ through kombu: the only module of the project that imports kombu (and amqp).

Two halves:

* publishing: messages are published with publisher confirms, awaited in batches (one
  round trip per few hundred messages instead of one per message); a connection lost
  mid-batch is re-established and the unconfirmed rest re-sent. A duplicate after such a
  retry is harmless: results are idempotent by job id.
* consuming: :meth:`AmqpBroker.consume` runs the connection loop in the calling thread.
  That thread alone touches the connection: it receives deliveries, sends heartbeats and
  performs every ack, reject and dead-letter publish. Worker threads hand their outcome
  back through :class:`Delivery` methods, which only queue an action for that thread
  (kombu and py-amqp connections are not thread-safe).

The work queue is a durable quorum queue with a delivery limit: a message that keeps
killing workers (delivered ``DELIVERY_LIMIT`` times without an ack) is dead-lettered by
RabbitMQ itself. Messages we find poisonous (bad JSON, unknown task, too large, a call
that crashed) are re-published to ``<queue>.dead`` with the reason in the
``x-urltester-reason`` header, then acked.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import amqp
from kombu import Connection, Consumer, Queue
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from runner.backoff import backoff
from runner.errors import BrokerError, ConfigError
from runner.text import mask_url as mask_password

log = logging.getLogger("urltester.broker")

DELIVERY_LIMIT = 10
CONFIRM_BATCH = 500
HEARTBEAT = 30
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, socket.timeout, amqp.exceptions.ConnectionError, amqp.exceptions.ChannelError,
    amqp.exceptions.RecoverableConnectionError, ConnectionError,
)


def dead_queue_name(queue: str) -> str:
    return f"{queue}.dead"


# A deferred call waits in a delay queue whose messages all share one TTL (RabbitMQ only
# expires messages at a queue's head, so one TTL per queue keeps them in order), then is
# dead-lettered back onto the work queue. The delay is rounded down to a power of two:
# the call comes back early, at worst by half, and defers itself again for the rest.
DELAY_BUCKETS = tuple(2 ** k for k in range(11))  # 1 s .. 1024 s


def delay_bucket(delay: float) -> int:
    return max((b for b in DELAY_BUCKETS if b <= delay), default=DELAY_BUCKETS[0])


def delay_queue_name(queue: str, bucket: int) -> str:
    return f"{queue}.delay.{bucket}s"


def _delay_queue(queue: str, bucket: int) -> Queue:
    return Queue(
        delay_queue_name(queue, bucket), durable=True, auto_delete=False,
        queue_arguments={
            "x-message-ttl": bucket * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        },
    )


def _queues(name: str) -> tuple[Queue, Queue]:
    dead = dead_queue_name(name)
    work = Queue(
        name, durable=True, auto_delete=False,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead,
        },
    )
    return work, Queue(dead, durable=True, auto_delete=False)


@dataclass
class QueueDepth:
    ready: int
    consumers: int
    dead: int


class Delivery:
    """One received message. Its methods may be called from any thread: they queue the
    action for the connection thread, which performs it on its next turn."""

    def __init__(self, broker: AmqpBroker, message: Any, generation: int) -> None:
        self._broker = broker
        self._message = message
        self._generation = generation
        self.body: bytes = message.body if isinstance(message.body, bytes) else str(message.body).encode()
        self.headers: dict[str, Any] = dict(message.headers or {})
        self.redelivered: bool = bool(message.delivery_info.get("redelivered")) or bool(
            self.headers.get("x-delivery-count")) or bool(self.headers.get("x-urltester-requeued"))

    def ack(self) -> None:
        self._broker._actions.put(("ack", self, None))

    def requeue(self) -> None:
        self._broker._actions.put(("requeue", self, None))

    def hand_on(self, body: bytes) -> None:
        """Publish ``body`` (calls of this message not started in time) to the work queue as a
        new message, confirmed, before any later action on this one (its ack)."""
        self._broker._actions.put(("hand_on", self, body))

    def defer(self, body: bytes, delay: float) -> None:
        """Publish ``body`` (a call to run later) to come back onto the work queue after
        about ``delay`` seconds (never later: see :func:`delay_bucket`), confirmed, before
        any later action on this message (its ack)."""
        self._broker._actions.put(("defer", self, (body, delay)))

    def dead_letter(self, reason: str, body: bytes | None = None) -> None:
        """Send ``body`` (default: this message) to the dead-letter queue with ``reason``.
        With a body of its own (one call out of a pack), the message itself is left alone."""
        self._broker._actions.put(("dead", self, (reason, body)))


class AmqpBroker:
    """Publishing and consuming on one RabbitMQ queue (and its dead-letter queue)."""

    def __init__(self, url: str, queue: str, *, connect_timeout: float = 5.0,
                 publish_retry_seconds: float = 30.0) -> None:
        self.url = url
        self.queue = queue
        self.connect_timeout = connect_timeout
        self.publish_retry_seconds = publish_retry_seconds
        self._work, self._dead = _queues(queue)
        self._publish_lock = threading.Lock()
        self._publish_conn: Connection | None = None
        self._actions: queue_mod.Queue[tuple[str, Delivery, Any]] = queue_mod.Queue()
        self._generation = 0

    @property
    def shown(self) -> str:
        return mask_password(self.url)

    # ------------------------------------------------------------------ connections

    def _connect(self) -> Connection:
        conn = Connection(self.url, heartbeat=HEARTBEAT, connect_timeout=self.connect_timeout,
                          transport_options={"max_retries": 0})
        try:
            conn.ensure_connection(max_retries=1, timeout=self.connect_timeout)
        except CONNECTION_ERRORS as exc:
            _release(conn)
            raise BrokerError(self._describe(exc)) from exc
        except Exception as exc:
            _release(conn)
            if "ACCESS_REFUSED" in str(exc) or "403" in str(exc):
                raise ConfigError(f"RabbitMQ at {self.shown} refused the login (check user and password)") from exc
            raise BrokerError(self._describe(exc)) from exc
        return conn

    def _describe(self, exc: BaseException) -> str:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        password = Connection(self.url).password
        if password:
            text = text.replace(password, "***")
        return f"RabbitMQ at {self.shown} is unreachable: {text}"

    def declare(self, channel: Any) -> None:
        self._dead(channel).declare()
        self._work(channel).declare()

    def ping(self) -> QueueDepth:
        """Connect, declare the queues, and return their depth (BrokerError otherwise)."""
        conn = self._connect()
        try:
            ch = conn.channel()
            self.declare(ch)
            _, ready, consumers = ch.queue_declare(self.queue, passive=True)
            _, dead, _ = ch.queue_declare(dead_queue_name(self.queue), passive=True)
            return QueueDepth(ready, consumers, dead)
        except CONNECTION_ERRORS as exc:
            raise BrokerError(self._describe(exc)) from exc
        finally:
            _release(conn)

    def purge(self, *, dead: bool = False) -> int:
        conn = self._connect()
        try:
            ch = conn.channel()
            self.declare(ch)
            return ch.queue_purge(dead_queue_name(self.queue) if dead else self.queue) or 0
        finally:
            _release(conn)

    def get_dead(self, limit: int = 100) -> list[tuple[dict[str, Any], bytes]]:
        """Read (and remove) up to ``limit`` dead-lettered messages: (headers, body)."""
        conn = self._connect()
        out = []
        try:
            ch = conn.channel()
            self.declare(ch)
            for _ in range(limit):
                msg = ch.basic_get(dead_queue_name(self.queue), no_ack=True)
                if msg is None:
                    break
                out.append((dict(msg.headers or {}), msg.body))
        finally:
            _release(conn)
        return out

    def close(self) -> None:
        with self._publish_lock:
            if self._publish_conn is not None:
                _release(self._publish_conn)
                self._publish_conn = None

    # ------------------------------------------------------------------ publishing

    def publish(self, messages: Sequence[bytes], *, headers: dict[str, Any] | None = None,
                routing_key: str | None = None) -> None:
        """Publish persistent messages and return once RabbitMQ confirmed every one.

        Raises BrokerError if that cannot be done within ``publish_retry_seconds``.
        """
        if not messages:
            return
        with self._publish_lock:
            sent = 0
            retrying = Retrying(
                stop=stop_after_delay(self.publish_retry_seconds),
                wait=backoff(0.2, 5),
                retry=retry_if_exception_type((BrokerError, *CONNECTION_ERRORS)),
                reraise=True,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        sent = self._publish_from(messages, sent, headers or {}, routing_key or self.queue)
            except CONNECTION_ERRORS as exc:
                self._drop_publisher()
                raise BrokerError(self._describe(exc)) from exc
            except BrokerError:
                self._drop_publisher()
                raise

    def _publish_from(self, messages: Sequence[bytes], start: int, headers: dict[str, Any], routing_key: str) -> int:
        """Publish ``messages[start:]`` in confirmed batches; returns how many are confirmed."""
        try:
            if self._publish_conn is None:
                conn = self._connect()
                ch = conn.channel()
                self.declare(ch)
                ch.confirm_select()
                state = {"acked": 0, "nacked": False}

                def on_ack(tag: int, multiple: bool) -> None:
                    state["acked"] = max(state["acked"], tag)

                def on_nack(tag: int, multiple: bool) -> None:
                    state["nacked"] = True

                ch.events["basic_ack"].add(on_ack)
                ch.events["basic_nack"].add(on_nack)
                conn._urltester = (ch, state, [0])  # type: ignore[attr-defined]
                self._publish_conn = conn
            conn = self._publish_conn
            ch, state, seq = conn._urltester  # type: ignore[attr-defined]
            done = start
            while done < len(messages):
                batch = messages[done:done + CONFIRM_BATCH]
                for body in batch:
                    ch.basic_publish(
                        amqp.Message(body, content_type="application/json", content_encoding="utf-8",
                                     delivery_mode=2, application_headers=headers),
                        exchange="", routing_key=routing_key, mandatory=False,
                    )
                    seq[0] += 1
                deadline = time.monotonic() + 30
                while state["acked"] < seq[0] and not state["nacked"]:
                    if time.monotonic() > deadline:
                        raise BrokerError(f"RabbitMQ at {self.shown} did not confirm publishes within 30 s")
                    try:
                        conn.drain_events(timeout=1)
                    except TimeoutError:
                        conn.heartbeat_check()
                if state["nacked"]:
                    state["nacked"] = False
                    raise BrokerError(f"RabbitMQ at {self.shown} refused to store a message (nack)")
                done += len(batch)
            return done
        except BaseException:
            self._drop_publisher()
            raise

    def _drop_publisher(self) -> None:
        if self._publish_conn is not None:
            _release(self._publish_conn)
            self._publish_conn = None

    # ------------------------------------------------------------------ consuming

    def consume(self, *, prefetch: int | Callable[[], int], on_delivery: Callable[[Delivery], None], stop: threading.Event,
                drained: Callable[[], bool], on_connection_lost: Callable[[], None] | None = None,
                on_connected: Callable[[], None] | None = None) -> None:
        """Run the connection loop in this thread until ``stop`` is set and ``drained()``.

        ``on_delivery`` runs in this thread and must not block. ``prefetch`` may be a
        function: it is asked every turn, and a changed answer is applied (basic.qos). After ``stop``, no new
        deliveries are taken (the consumer is cancelled) but acks keep flowing until
        ``drained()`` says the caller has nothing in flight. A lost connection is
        re-established with backoff, forever; deliveries from the old connection can no
        longer be acked (RabbitMQ redelivers them), so their actions are dropped and
        ``on_connection_lost`` tells the caller.
        """
        reconnecting = Retrying(wait=backoff(0.5, 15), reraise=True,
                                retry=retry_if_exception_type((BrokerError, *CONNECTION_ERRORS)))
        for attempt in reconnecting:
            with attempt:
                if stop.is_set() and drained():
                    return
                try:
                    self._consume_once(prefetch, on_delivery, stop, drained, on_connected)
                except (BrokerError, *CONNECTION_ERRORS) as exc:
                    self._generation += 1
                    log.warning("connection to RabbitMQ lost (%s); reconnecting", self._describe(exc))
                    if on_connection_lost is not None:
                        on_connection_lost()
                    if stop.is_set():
                        return  # stopping: unacked messages are redelivered by RabbitMQ
                    raise

    def _consume_once(self, prefetch: int | Callable[[], int], on_delivery: Callable[[Delivery], None], stop: threading.Event,
                      drained: Callable[[], bool], on_connected: Callable[[], None] | None) -> None:
        conn = self._connect()
        try:
            channel = conn.channel()
            self.declare(channel)
            dead_channel = conn.channel()
            dead_channel.confirm_select()
            generation = self._generation

            def on_message(message: Any) -> None:
                on_delivery(Delivery(self, message, generation))

            wanted = prefetch if callable(prefetch) else (lambda: prefetch)
            applied = wanted()
            consumer = Consumer(channel, queues=[self._work], on_message=on_message, no_ack=False,
                                prefetch_count=applied)
            consumer.consume()
            self._delays_declared: set[int] = set()
            log.info("consuming from %s on %s (prefetch %d)", self.queue, self.shown, applied)
            if on_connected is not None:
                on_connected()
            cancelled = False
            changed = time.monotonic()
            while True:
                self._run_actions(generation, dead_channel, channel)
                now_wanted = wanted()
                if not cancelled and now_wanted != applied and (
                        not 0.8 <= now_wanted / applied <= 1.25 or time.monotonic() - changed > 5):
                    # RabbitMQ applies a per-consumer basic.qos only to consumers started after
                    # it: the new prefetch needs a new consumer. Deliveries of the old one stay
                    # ours to ack on this channel.
                    consumer.cancel()
                    consumer = Consumer(channel, queues=[self._work], on_message=on_message, no_ack=False,
                                        prefetch_count=now_wanted)
                    consumer.consume()
                    applied, changed = now_wanted, time.monotonic()
                if stop.is_set():
                    if not cancelled:
                        consumer.cancel()
                        cancelled = True
                    if drained():
                        self._run_actions(generation, dead_channel, channel)
                        return
                try:
                    conn.drain_events(timeout=0.05)
                except TimeoutError:
                    pass
                conn.heartbeat_check()
        finally:
            _release(conn)

    def _run_actions(self, generation: int, dead_channel: Any, channel: Any) -> None:
        while True:
            try:
                action, delivery, arg = self._actions.get_nowait()
            except queue_mod.Empty:
                return
            if delivery._generation != generation:
                continue  # from a closed connection: RabbitMQ has already requeued it
            msg = delivery._message
            if action == "ack":
                msg.ack()
            elif action == "requeue":
                msg.reject(requeue=True)
            elif action == "hand_on":
                # Marked requeued: a copy may also come back with the old message (if the
                # connection drops before its ack), so the check looks for a result first.
                dead_channel.basic_publish_confirm(
                    amqp.Message(arg, content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                                 application_headers={"x-urltester-requeued": True}),
                    exchange="", routing_key=self.queue,
                )
            elif action == "defer":
                body, delay = arg
                bucket = delay_bucket(delay)
                if bucket not in self._delays_declared:
                    _delay_queue(self.queue, bucket)(dead_channel).declare()
                    self._delays_declared.add(bucket)
                # Marked requeued, like a hand-on: the check looks for a result first.
                # Published on the consuming channel, unconfirmed: a channel keeps its order,
                # so RabbitMQ has it before the ack that follows. Waiting for a confirm per
                # deferred call (a round trip each, in this thread) stalled every other
                # delivery and ack: on a 20 ms link, a host's 10x slowdown beside 2,000
                # deferred calls of another (bench-fleet). Lost only if RabbitMQ itself dies
                # in between; the job stays queued in the database for `requeue --stale`.
                channel.basic_publish(
                    amqp.Message(body, content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                                 application_headers={"x-urltester-requeued": True}),
                    exchange="", routing_key=delay_queue_name(self.queue, bucket),
                )
            elif action == "dead":
                reason, body = arg
                headers = {**delivery.headers, "x-urltester-reason": reason[:1000], "x-urltester-queue": self.queue}
                dead_channel.basic_publish_confirm(
                    amqp.Message(body if body is not None else delivery.body,
                                 content_type=msg.content_type or "application/octet-stream",
                                 delivery_mode=2, application_headers=headers),
                    exchange="", routing_key=dead_queue_name(self.queue),
                )
                if body is None:
                    msg.ack()
                log.warning("dead-lettered a message from %s: %s", self.queue, reason)


def _release(conn: Connection) -> None:
    try:
        conn.release()
    except Exception:  # noqa: BLE001 - releasing a broken connection may fail in any way
        pass


def open_broker(url: str, queue: str, *, publish_timeout: float = 30.0) -> AmqpBroker:
    """An AMQP broker for ``amqp://`` URLs (connections are made lazily)."""
    try:
        Connection(url).transport_cls  # noqa: B018 - validates the transport name
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"broker URL {mask_password(url)} is not usable: {exc}") from exc
    return AmqpBroker(url, queue, publish_retry_seconds=publish_timeout)
