"""The Huey-like task runner: tasks and messages (app), RabbitMQ (broker, dead), the consumer pool.

Owns: registering tasks, encoding calls as JSON messages, publishing them with confirms,
consuming with late acks from one connection thread, dead letters, and the pool of worker
threads and processes. Knows nothing of URLs, checks or the database: what a call does
and what a worker reports is the application's (:class:`runner.taskq.pool.Service`).

The only code of urltester that imports kombu or amqp. May import: the shared leaves
(``runner.errors``, ``runner.text``, ``runner.backoff``), tenacity; never ``runner.check``,
``runner.jobs``, ``runner.cli``, ``db`` or ``tui``.
"""
