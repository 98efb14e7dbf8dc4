"""The Huey-like task runner: tasks and messages (app), the brokers (RabbitMQ's in broker and
dead, the in-memory one in memory), the consumer pool.

Owns: registering tasks, encoding calls as JSON messages, publishing them with confirms,
consuming with late acks from one connection thread, dead letters, the in-memory broker
whose consumer is its own process, and the pool of worker threads and processes. Knows
nothing of URLs, checks or the database: what a call does and what a worker reports is the
application's (:class:`runner.taskq.pool.Service`).

The only code of urltester that imports kombu or amqp. May import: the shared leaves
(``runner.errors``, ``runner.text``, ``runner.backoff``), tenacity; never ``runner.check``,
``runner.jobs``, ``runner.cli``, ``db`` or ``tui``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.taskq.broker import AmqpBroker
    from runner.taskq.memory import MemoryBroker


def open_broker(url: str, queue: str, *, publish_timeout: float = 30.0) -> AmqpBroker | MemoryBroker:
    """The broker a URL names: ``memory://`` the in-memory one (its consumer is this process),
    anything else RabbitMQ's (the URL validated; connections are made lazily). Kombu is
    imported only for the latter."""
    from runner.taskq.memory import MemoryBroker, is_memory_url

    if is_memory_url(url):
        return MemoryBroker(queue)
    from runner.taskq.broker import AmqpBroker

    return AmqpBroker.from_url(url, queue, publish_timeout=publish_timeout)
