"""RabbitMQ through kombu: with dead.py beside it, the only modules that import kombu and amqp.

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

Deliveries are taken from py-amqp as they arrive, raw: not through kombu's ``Consumer``,
whose ``Message`` decompresses a body as its ``compression`` header says, whole and
before anyone can look at its size (a bz2 body of 1 KiB became 1 GiB), and raises
decompression errors out of ``drain_events``, where they looked like a lost connection.
The body stays bytes until :func:`runner.taskq.app.decode` judges it; whatever goes
wrong while a delivery is handed over dead-letters that message with the reason, never
the connection. A dead-letter or hand-on publish that RabbitMQ refuses (nack) leaves
the message to RabbitMQ's own dead-lettering or redelivery instead of ending the worker.
"""

from __future__ import annotations

import logging
import queue as queue_mod
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import unquote

import amqp
from kombu import Connection, Queue
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from runner import metrics
from runner.backoff import backoff
from runner.errors import BrokerError, ConfigError
from runner.taskq.app import DELAY_BUCKETS, QueueDepth, delay_bucket
from runner.text import mask_url as mask_password
from runner.text import url_password

log = logging.getLogger("urltester.broker")

DELIVERY_LIMIT = 10
CONFIRM_BATCH = 500
HEARTBEAT = 30
DEPTH_EVERY = 5.0  # seconds between two readings of the queue depth (metrics) by a consumer
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, socket.timeout, amqp.exceptions.ConnectionError, amqp.exceptions.ChannelError,
    amqp.exceptions.RecoverableConnectionError, ConnectionError,
)
_LOST: tuple[type[BaseException], ...] = (BrokerError, ConfigError, *CONNECTION_ERRORS)  # a consumer reconnects


class Stop(Protocol):
    """What a consumer asks of its stop request (a threading.Event, the pool's StopSignal)."""

    def is_set(self) -> bool: ...


def dead_queue_name(queue: str) -> str:
    return f"{queue}.dead"


__all__ = ["DELAY_BUCKETS", "AmqpBroker", "Delivery", "delay_bucket", "delay_queue_name"]


def delay_queue_name(queue: str, bucket: float) -> str:
    """``<queue>.delay.Ns`` (N whole seconds) or ``<queue>.delay.Nms`` under a second."""
    return f"{queue}.delay.{int(bucket)}s" if bucket >= 1 else f"{queue}.delay.{round(bucket * 1000)}ms"


def _delay_queue(queue: str, bucket: float) -> Queue:
    return Queue(
        delay_queue_name(queue, bucket), durable=True, auto_delete=False,
        queue_arguments={
            "x-message-ttl": round(bucket * 1000),
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


class Delivery:
    """One received message. Its methods may be called from any thread: they queue the
    action for the connection thread, which performs it on its next turn."""

    def __init__(self, broker: AmqpBroker, message: amqp.Message, generation: int) -> None:
        self._broker = broker
        self._message = message
        self._generation = generation
        self._hand_on_failed = False  # a hand-on publish was refused: requeue instead of ack
        body = message.body
        self.body: bytes = bytes(body) if isinstance(body, bytes | bytearray | memoryview) else str(body).encode(
            "utf-8", "surrogateescape")
        headers = message.properties.get("application_headers")
        self.headers: dict[str, Any] = dict(headers) if isinstance(headers, dict) else {}
        self.content_type: str | None = message.properties.get("content_type")
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


# getaddrinfo's answers that a name does not exist (as opposed to EAI_AGAIN, a resolver
# that did not answer, worth a retry).
_NO_SUCH_NAME = {getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)}


def _no_such_host(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # kombu wraps the socket's error
        if seen is None:
            return False
        if isinstance(seen, socket.gaierror):
            return seen.errno in _NO_SUCH_NAME
        seen = seen.__cause__ or seen.__context__
    return False


class AmqpBroker:
    """Publishing and consuming on one RabbitMQ queue (and its dead-letter queue)."""

    delays = True  # publish(delay=) holds messages back in delay queues (the in-memory broker cannot)

    def __init__(self, url: str, queue: str, *, connect_timeout: float = 5.0,
                 publish_retry_seconds: float = 30.0, publishers: int = 2) -> None:
        self.url = url
        self.queue = queue
        self.connect_timeout = connect_timeout
        self.publish_retry_seconds = publish_retry_seconds
        self._work, self._dead = _queues(queue)
        self._publish_slots = threading.BoundedSemaphore(publishers)
        self._publishers_lock = threading.Lock()
        self._idle: list[_Publisher] = []
        self._actions: queue_mod.Queue[tuple[str, Delivery, Any]] = queue_mod.Queue()
        self._generation = 0

    @classmethod
    def from_url(cls, url: str, queue: str, *, publish_timeout: float = 30.0) -> AmqpBroker:
        """For ``amqp://`` URLs (see :func:`runner.taskq.open_broker`); connections are made lazily."""
        try:
            Connection(url).transport_cls  # noqa: B018 - validates the transport name
        except Exception as exc:
            raise ConfigError(f"broker URL {mask_password(url)} is not usable: {exc}") from exc
        return cls(url, queue, publish_retry_seconds=publish_timeout)

    @property
    def shown(self) -> str:
        return mask_password(self.url)

    def attach(self, app: Any) -> None:
        """Nothing to do: RabbitMQ's consumers are ``runner start`` processes."""

    def flush(self, timeout: float | None = None) -> bool:
        """At once: :meth:`publish` returns only once RabbitMQ holds every message."""
        return True

    # ------------------------------------------------------------------ connections

    def _connect(self) -> Connection:
        conn = Connection(self.url, heartbeat=HEARTBEAT, connect_timeout=self.connect_timeout,
                          transport_options={"max_retries": 0})
        try:
            conn.ensure_connection(max_retries=1, timeout=self.connect_timeout)
        except Exception as exc:
            _release(conn)
            # py-amqp's AccessRefused is a ConnectionError too: test for it first, since a
            # refused login is a setting to fix (exit 2), not an outage to wait out.
            if isinstance(exc, amqp.exceptions.AccessRefused) or "ACCESS_REFUSED" in str(exc):
                raise ConfigError(f"RabbitMQ at {self.shown} refused the login (check user and password)") from exc
            if _no_such_host(exc):  # a typo in the URL's host: no retry brings it back
                raise ConfigError(f"RabbitMQ at {self.shown}: the host name does not resolve "
                                  "(check the broker URL)") from exc
            raise BrokerError(self._describe(exc)) from exc
        return conn

    def _describe(self, exc: BaseException) -> str:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        password = url_password(self.url)
        if password:
            text = text.replace(password, "***").replace(unquote(password), "***")
        return f"RabbitMQ at {self.shown} is unreachable: {text}"

    def declare(self, channel: Any, queue: str | None = None) -> None:
        """Declare a work queue and its dead-letter queue (default: this broker's own)."""
        work, dead = (self._work, self._dead) if queue in (None, self.queue) else _queues(queue)
        dead(channel).declare()
        work(channel).declare()

    def ping(self, queue: str | None = None) -> QueueDepth:
        """Connect, declare a queue (default: this broker's own) and return its depth
        (BrokerError otherwise)."""
        name = queue or self.queue
        conn = self._connect()
        try:
            ch = conn.channel()
            self.declare(ch, name)
            _, ready, consumers = ch.queue_declare(name, passive=True)
            _, dead, _ = ch.queue_declare(dead_queue_name(name), passive=True)
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
        with self._publishers_lock:
            idle, self._idle = self._idle, []
        for publisher in idle:
            _release(publisher.conn)

    # ------------------------------------------------------------------ publishing

    def publish(self, messages: Sequence[bytes], *, headers: dict[str, Any] | None = None,
                routing_key: str | None = None, delay: float = 0.0) -> None:
        """Publish persistent messages and return once RabbitMQ confirmed every one.

        ``delay``: they reach the queue about that many seconds later (never later: through
        the delay queue of :func:`delay_bucket`), as a deferred call does.

        Safe from several threads at once: each publish takes a connection of its own from
        a small pool (up to ``publishers``), so a large batch's chunks are confirmed in
        parallel. Raises BrokerError if that cannot be done within ``publish_retry_seconds``.
        """
        if not messages:
            return
        with self._publish_slots:
            publisher = self._take_publisher()
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
                        if publisher is None:
                            publisher = self._new_publisher()
                        try:
                            sent = publisher.send(messages, sent, headers or {}, routing_key or self.queue, delay)
                        except BaseException:
                            _release(publisher.conn)
                            publisher = None
                            raise
            except CONNECTION_ERRORS as exc:
                raise BrokerError(self._describe(exc)) from exc
            finally:
                if publisher is not None:
                    with self._publishers_lock:
                        self._idle.append(publisher)

    def _take_publisher(self) -> _Publisher | None:
        with self._publishers_lock:
            return self._idle.pop() if self._idle else None

    def _new_publisher(self) -> _Publisher:
        conn = self._connect()
        try:
            ch = conn.channel()
            self.declare(ch)
            return _Publisher(self, conn, ch)
        except BaseException:
            _release(conn)
            raise

    # ------------------------------------------------------------------ consuming

    def consume(self, *, prefetch: int | Callable[[], int], on_delivery: Callable[[Delivery], None], stop: Stop,
                drained: Callable[[], bool], on_connection_lost: Callable[[], None] | None = None,
                on_connected: Callable[[], None] | None = None, tick: Callable[[], None] | None = None) -> None:
        """Run the connection loop in this thread until ``stop`` is set and ``drained()``.

        ``on_delivery`` runs in this thread and must not block. ``prefetch`` may be a
        function: it is asked every turn, and a changed answer is applied (basic.qos). After ``stop``, no new
        deliveries are taken (the consumer is cancelled) but acks keep flowing until
        ``drained()`` says the caller has nothing in flight. A lost connection is
        re-established with backoff, forever; deliveries from the old connection can no
        longer be acked (RabbitMQ redelivers them), so their actions are dropped and
        ``on_connection_lost`` tells the caller.

        ``tick`` runs in this thread on every turn of the loop (every 50 ms or sooner) and
        before each attempt to reconnect: the sign of life a watchdog waits for. It must
        not block.
        """
        # A refused login while running (ConfigError: credentials rotated, the user database
        # still loading after a RabbitMQ restart) is waited out like an outage.
        reconnecting = Retrying(wait=backoff(0.5, 15), reraise=True,
                                retry=retry_if_exception_type((BrokerError, ConfigError, *CONNECTION_ERRORS)))
        for attempt in reconnecting:
            with attempt:
                if stop.is_set() and drained():
                    return
                if tick is not None:
                    tick()
                try:
                    self._consume_once(prefetch, on_delivery, stop, drained, on_connected, tick)
                except _LOST as exc:
                    self._generation += 1
                    log.warning("connection to RabbitMQ lost (%s); reconnecting", self._describe(exc))
                    if on_connection_lost is not None:
                        on_connection_lost()
                    if stop.is_set():
                        return  # stopping: unacked messages are redelivered by RabbitMQ
                    raise

    def _consume_once(self, prefetch: int | Callable[[], int], on_delivery: Callable[[Delivery], None],
                      stop: Stop, drained: Callable[[], bool], on_connected: Callable[[], None] | None,
                      tick: Callable[[], None] | None) -> None:
        conn = self._connect()
        try:
            channel = conn.channel()
            self.declare(channel)
            dead_channel = conn.channel()
            dead_channel.confirm_select()
            generation = self._generation

            def on_message(message: amqp.Message) -> None:
                metrics.RECEIVED.inc()
                try:
                    delivery = Delivery(self, message, generation)
                except Exception as exc:  # noqa: BLE001 - a message must never end the connection
                    log.warning("a message from %s could not be read (%s); rejecting it", self.queue, exc)
                    channel.basic_reject(message.delivery_tag, requeue=False)  # RabbitMQ dead-letters it
                    return
                try:
                    on_delivery(delivery)
                except Exception as exc:  # noqa: BLE001 - the same: dead-letter it, keep consuming
                    delivery.dead_letter(f"message could not be handled: {type(exc).__name__}: {exc}")

            # Raw py-amqp deliveries: kombu's Consumer would decompress first (see above).
            channel.auto_decode = False
            wanted = prefetch if callable(prefetch) else (lambda: prefetch)
            applied = wanted()
            channel.basic_qos(0, applied, False)
            tag = channel.basic_consume(self.queue, callback=on_message, no_ack=False)
            self._delays_declared: set[float] = set()
            log.info("consuming from %s on %s (prefetch %d)", self.queue, self.shown, applied)
            if on_connected is not None:
                on_connected()
            cancelled = False
            changed = time.monotonic()
            depth_due = 0.0
            while True:
                if tick is not None:
                    tick()
                if time.monotonic() >= depth_due:
                    depth_due = time.monotonic() + DEPTH_EVERY
                    try:  # waiting for the reply, py-amqp parses whatever else arrives too
                        self._read_depth(channel)
                    except CONNECTION_ERRORS:
                        raise
                    except Exception as exc:  # as for drain_events below
                        raise self._unreadable(exc) from exc
                self._run_actions(generation, dead_channel)
                now_wanted = wanted()
                if not cancelled and now_wanted != applied and (
                        not 0.8 <= now_wanted / applied <= 1.25 or time.monotonic() - changed > 5):
                    # RabbitMQ applies a per-consumer basic.qos only to consumers started after
                    # it: the new prefetch needs a new consumer. Deliveries of the old one stay
                    # ours to ack on this channel.
                    channel.basic_cancel(tag)
                    channel.basic_qos(0, now_wanted, False)
                    tag = channel.basic_consume(self.queue, callback=on_message, no_ack=False)
                    applied, changed = now_wanted, time.monotonic()
                if stop.is_set():
                    if not cancelled:
                        channel.basic_cancel(tag)
                        cancelled = True
                    if drained():
                        self._run_actions(generation, dead_channel)
                        return
                try:
                    conn.drain_events(timeout=0.05)
                except TimeoutError:
                    pass
                except CONNECTION_ERRORS:
                    raise
                except Exception as exc:  # py-amqp could not parse a frame
                    raise self._unreadable(exc) from exc
                conn.heartbeat_check()
        finally:
            _release(conn)

    def _unreadable(self, exc: BaseException) -> BrokerError:
        """What RabbitMQ sent could not be parsed by py-amqp (deliveries themselves are
        handled inside on_message): a header table nested thousands deep raises
        RecursionError in its parser. The connection's framing is lost: start a new one.
        The message comes back, and after DELIVERY_LIMIT tries RabbitMQ dead-letters it;
        the process lives on."""
        return BrokerError(f"a message from {self.queue} could not be read by py-amqp "
                           f"({type(exc).__name__}: {str(exc)[:200]})")

    def _run_actions(self, generation: int, dead_channel: Any) -> None:
        while True:
            try:
                action, delivery, arg = self._actions.get_nowait()
            except queue_mod.Empty:
                return
            if delivery._generation != generation:
                continue  # from a closed connection: RabbitMQ has already requeued it
            msg = delivery._message
            channel = msg.channel
            tag = msg.delivery_tag
            if action == "ack" and delivery._hand_on_failed:
                action = "requeue"  # its unstarted calls were not handed on: all of it again
            if action == "ack":
                channel.basic_ack(tag)
            elif action == "requeue":
                channel.basic_reject(tag, requeue=True)
                metrics.REQUEUED.inc()
            elif action == "hand_on":
                # Marked requeued: a copy may also come back with the old message (if the
                # connection drops before its ack), so the check looks for a result first.
                try:
                    dead_channel.basic_publish_confirm(
                        amqp.Message(arg, content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                                     application_headers={"x-urltester-requeued": True}),
                        exchange="", routing_key=self.queue,
                    )
                    metrics.CONFIRMED.inc()
                except amqp.exceptions.MessageNacked:
                    log.warning("RabbitMQ refused the hand-on of calls to %s; the message is requeued instead",
                                self.queue)
                    delivery._hand_on_failed = True
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
                self._dead_letter(delivery, dead_channel, *arg)

    def _dead_letter(self, delivery: Delivery, dead_channel: Any, reason: str, body: bytes | None) -> None:
        msg = delivery._message
        headers = {**delivery.headers, "x-urltester-reason": reason[:1000], "x-urltester-queue": self.queue}
        try:
            dead_channel.basic_publish_confirm(
                amqp.Message(body if body is not None else delivery.body,
                             content_type=delivery.content_type or "application/octet-stream",
                             delivery_mode=2, application_headers=headers),
                exchange="", routing_key=dead_queue_name(self.queue),
            )
        except amqp.exceptions.MessageNacked:
            # The dead-letter queue will not take it (full, or a policy refuses it). The whole
            # message: reject it, so RabbitMQ dead-letters it by the queue's own arguments (the
            # reason is only in the log). One call of a pack: it is lost to the queue, its job
            # stays unfinished in the database, where `runner requeue --stale` finds it.
            log.error("RabbitMQ refused to dead-letter a message from %s (%s): %s",
                      self.queue, reason, "rejecting it" if body is None else "the call is dropped")
            if body is None:
                msg.channel.basic_reject(msg.delivery_tag, requeue=False)
            return
        metrics.CONFIRMED.inc()
        metrics.DEAD_LETTERED.inc()
        if body is None:
            msg.channel.basic_ack(msg.delivery_tag)
        log.warning("dead-lettered a message from %s: %s", self.queue, reason)


    def _read_depth(self, channel: Any) -> None:
        """The queues' depth into the metrics (messages ready, not those being worked on)."""
        _, ready, consumers = channel.queue_declare(self.queue, passive=True)
        _, dead, _ = channel.queue_declare(dead_queue_name(self.queue), passive=True)
        metrics.QUEUE_MESSAGES.labels("work").set(ready)
        metrics.QUEUE_MESSAGES.labels("dead").set(dead)
        metrics.QUEUE_CONSUMERS.set(consumers)


class _Publisher:
    """One publishing connection with confirms on: used by one publish at a time."""

    def __init__(self, broker: AmqpBroker, conn: Connection, channel: Any) -> None:
        self.broker = broker
        self.conn = conn
        self.channel = channel
        self.acked = 0
        self.nacked = False
        self.seq = 0
        self.declared = {broker.queue}
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self.acked = max(self.acked, tag)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self.nacked = True

    def send(self, messages: Sequence[bytes], start: int, headers: dict[str, Any], routing_key: str,
             delay: float = 0.0) -> int:
        """Publish ``messages[start:]`` in confirmed batches; returns how many are confirmed."""
        shown = self.broker.shown
        if routing_key not in self.declared:
            # A publish to a queue that does not exist is dropped without a word: declare
            # another queue (a region's) before the first message to it on this connection.
            self.broker.declare(self.channel, routing_key)
            self.declared.add(routing_key)
        if delay >= DELAY_BUCKETS[0]:  # held back: into the delay queue that feeds routing_key
            bucket = delay_bucket(delay)
            work, routing_key = routing_key, delay_queue_name(routing_key, bucket)
            if routing_key not in self.declared:
                _delay_queue(work, bucket)(self.channel).declare()
                self.declared.add(routing_key)
        done = start
        while done < len(messages):
            batch = messages[done:done + CONFIRM_BATCH]
            for body in batch:
                self.channel.basic_publish(
                    amqp.Message(body, content_type="application/json", content_encoding="utf-8",
                                 delivery_mode=2, application_headers=headers),
                    exchange="", routing_key=routing_key, mandatory=False,
                )
                self.seq += 1
            deadline = time.monotonic() + 30
            while self.acked < self.seq and not self.nacked:
                if time.monotonic() > deadline:
                    raise BrokerError(f"RabbitMQ at {shown} did not confirm publishes within 30 s")
                try:
                    self.conn.drain_events(timeout=1)
                except TimeoutError:
                    self.conn.heartbeat_check()
            if self.nacked:
                self.nacked = False
                metrics.REFUSED.inc()
                raise BrokerError(f"RabbitMQ at {shown} refused to store a message (nack)")
            done += len(batch)
            metrics.CONFIRMED.inc(len(batch))
        return done


def _release(conn: Connection) -> None:
    try:
        conn.release()
    except Exception:  # noqa: BLE001 - releasing a broken connection may fail in any way
        pass
