"""The dead-letter queue (``<queue>.dead``): read, replayed and purged, with the reason for each.

Part of the task runner, beside :mod:`runner.taskq.broker` (whose connection it uses): the
only other module that touches kombu/amqp. Reading uses manual acks, so a message leaves
the queue only once what was asked for it (a confirmed re-publish, a purge) is done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import amqp

from runner.errors import BrokerError
from runner.taskq.broker import (
    CONNECTION_ERRORS,
    DELIVERY_LIMIT,
    AmqpBroker,
    _release,
    dead_queue_name,
)


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead-letter queue, and why it is there.

    ``id`` is the first 12 hex digits of the body's sha256: the same message keeps it from
    `runner dead list` to `show`, `requeue` or `purge` while other messages come and go (two
    copies of one body share it, and are acted on together).
    """

    id: str
    reason: str
    body: bytes
    headers: dict[str, Any]
    content_type: str
    redelivered: bool  # read before, by a `runner dead` command


def dead_reason(headers: dict[str, Any]) -> str:
    """Why a message was dead-lettered: ours say so in a header; RabbitMQ's own (delivery
    limit reached, rejected) in its ``x-death`` records."""
    ours = headers.get("x-urltester-reason")
    if ours:
        return _text(ours)
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        why = _text(deaths[0].get("reason", "unknown"))
        if why == "delivery_limit":
            return (f"RabbitMQ: delivered {DELIVERY_LIMIT} times without an ack "
                    "(each delivery killed or stalled a worker)")
        return f"RabbitMQ: {why}"
    first = headers.get("x-first-death-reason")
    return f"RabbitMQ: {_text(first)}" if first else "unknown (no reason recorded)"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _dead_id(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:12]


def dead_letters(broker: AmqpBroker, limit: int = 100) -> list[DeadLetter]:
    """The first ``limit`` dead-lettered messages, left in the queue (and in order)."""
    return _sweep(broker, lambda publish, letter: False, limit=limit)

def requeue_dead(broker: AmqpBroker, ids: Collection[str] | None = None) -> list[DeadLetter]:
    """Publish dead-lettered messages (those with ``ids``; None: all) to the work queue
    again, confirmed, then remove them from the dead-letter queue. The copy carries
    ``x-urltester-replayed`` (how many times) and no death record: the work queue's
    delivery limit counts afresh."""

    def replay(publish: Any, letter: DeadLetter) -> bool:
        headers = {k: v for k, v in letter.headers.items()
                   if not k.startswith(("x-death", "x-first-death", "x-last-death", "x-urltester-reason",
                                        "x-urltester-queue", "x-delivery-count"))}
        headers["x-urltester-replayed"] = int(letter.headers.get("x-urltester-replayed", 0) or 0) + 1
        publish.basic_publish_confirm(
            amqp.Message(letter.body, content_type=letter.content_type, delivery_mode=2,
                         application_headers=headers),
            exchange="", routing_key=broker.queue)
        return True

    return _sweep(broker, replay, ids=ids)

def drop_dead(broker: AmqpBroker, ids: Collection[str] | None = None) -> list[DeadLetter]:
    """Delete dead-lettered messages (those with ``ids``; None: all of them)."""
    return _sweep(broker, lambda publish, letter: True, ids=ids)

def _sweep(broker: AmqpBroker, act: Callable[..., Any], *, ids: Collection[str] | None = None,
           limit: int | None = None) -> list[DeadLetter]:
    """Read the dead-letter queue with manual acks; ``act(publish, letter)`` returning
    True acks (removes) a message, anything else leaves it (``publish``: a channel in
    confirm mode). Messages left are released when
    the channel closes and go back to their places in the queue, so a sweep that fails
    half-way loses nothing: each message is removed only after its action is done."""
    wanted = None if ids is None else {i.lower() for i in ids}
    conn = broker._connect()
    seen: list[DeadLetter] = []
    try:
        ch = conn.channel()
        broker.declare(ch)
        publish = conn.channel()
        publish.confirm_select()
        while limit is None or len(seen) < limit:
            msg = ch.basic_get(dead_queue_name(broker.queue), no_ack=False)
            if msg is None:
                break
            headers = dict(msg.headers or {})
            # py-amqp hands a body with a content_encoding back decoded, as str.
            body = msg.body if isinstance(msg.body, bytes) else str(msg.body).encode()
            letter = DeadLetter(_dead_id(body), dead_reason(headers), body, headers,
                                msg.properties.get("content_type") or "application/octet-stream",
                                bool(msg.delivery_info.get("redelivered")))
            if wanted is not None and letter.id not in wanted:
                continue
            seen.append(letter)
            if act(publish, letter) is True:
                ch.basic_ack(msg.delivery_info["delivery_tag"])
    except CONNECTION_ERRORS as exc:
        raise BrokerError(broker._describe(exc)) from exc
    finally:
        _release(conn)
    return seen
