"""No message is held past RabbitMQ's consumer timeout: calls that waited longer than the
pool's ``hold_budget`` before starting are handed on in a new message, and the old one is
acked. Shown here with a budget of 1 s on a worker with a deep local queue (prefetch 5
messages of 10 calls on 2 threads, 200 ms per check): the calls are handed on, never
started twice, and every job gets exactly one result.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from runner.cli.worker import check_service
from runner.jobs.settings import Settings
from runner.taskq.broker import Delivery
from runner.taskq.pool import PoolOptions, WorkerProcess
from tests.faults.harness import Harness

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.timeout(120)]


def test_calls_that_waited_past_the_hold_budget_are_handed_on_and_checked_once(
        harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.case = "8 held past budget"
    n = 100
    urls = [f"{harness.target.base}/ok?ms=200&t=hold&n={i}" for i in range(n)]
    harness.submit(urls)
    held: list[float] = []
    received = Delivery.__init__
    acked = Delivery.ack

    def stamp(self: Delivery, *args: object, **kwargs: object) -> None:
        received(self, *args, **kwargs)
        self.at = time.monotonic()  # type: ignore[attr-defined]

    def ack(self: Delivery) -> None:
        held.append(time.monotonic() - self.at)  # type: ignore[attr-defined]
        acked(self)

    monkeypatch.setattr(Delivery, "__init__", stamp)
    monkeypatch.setattr(Delivery, "ack", ack)
    settings = Settings(database_url=harness.pg_url, broker_url=harness.amqp_url, queue=harness.queue)
    worker = WorkerProcess(check_service(settings),
                           PoolOptions(concurrency=2, processes=1, prefetch=5, hold_budget=1.0))
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="urltester.worker"):
        thread.start()
        try:
            finished = harness.wait_done(n, 90)
        finally:
            worker.stop.set()
            thread.join(30)
    handed = [r for r in caplog.records if "handing them on" in r.getMessage()]
    assert handed, "no call waited past the budget: no damage done"
    hits = harness.target.hits()
    twice = {u: hits.get(u.removeprefix(harness.target.base), 0) for u in urls
             if hits.get(u.removeprefix(harness.target.base), 0) != 1}
    assert not twice, f"{len(twice)} URLs not checked exactly once, e.g. {list(twice.items())[:3]}"
    # Held at most the budget plus one call (200 ms) and a little scheduling.
    assert max(held) < 1.0 + 0.2 + 1.0, f"a message was held {max(held):.1f} s"
    row = harness.figures(finished - started, f"{len(handed)} messages handed on; held at most {max(held):.1f} s")
    harness.assert_clean(row, n)
