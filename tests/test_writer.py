"""The result writer: batched commits that worker threads do not wait for (embedded SQLite)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from db import NewJob, ResultRecord, Store, StoreUnavailable, open_store, utcnow
from runner.jobs.writer import ResultWriter
from tests.support.services import wait_until


class FlakyStore:
    """A real store whose ``store_results`` fails while ``down`` is set, and says what it got."""

    def __init__(self, store: Store, refuse: int | None = None) -> None:
        self.store = store
        self.down = threading.Event()
        self.calls: list[list[int]] = []
        self.failed = threading.Event()
        self.refuse = refuse  # a job whose result the database will not take

    def store_results(self, records, *, started=()) -> int:
        self.calls.append([r.job_id for r in records])
        if self.down.is_set():
            self.failed.set()
            raise StoreUnavailable("database unreachable (test)")
        if any(r.job_id == self.refuse for r in records):
            raise ValueError("A string literal cannot contain NUL (0x00) characters.")  # as psycopg2 says
        return self.store.store_results(records, started=started)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    store = open_store(sqlite_url)
    yield store
    store.close()


def record(job_id: int) -> ResultRecord:
    return ResultRecord(job_id=job_id, outcome="ok", ok=True, status_code=200, total_ms=1.0, attempts=1,
                        error=None, final_url=None, bytes=2, content_type="text/plain", title=None,
                        checked_at=utcnow())


def test_results_handed_in_during_an_outage_join_the_retried_batch(store: Store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://127.0.0.1/{i}") for i in range(3)])
    flaky = FlakyStore(store)
    flaky.down.set()
    writer = ResultWriter(flaky, give_up_after=30)  # type: ignore[arg-type]
    first = writer.add(record(ids[0]))
    assert flaky.failed.wait(5)
    later = [writer.add(record(i)) for i in ids[1:]]  # while the first batch is retried
    wait_until(lambda: flaky.calls[-1] == ids, 10, message="a retry that carries all three")
    assert not first.done() and not any(f.done() for f in later)
    flaky.down.clear()
    assert [f.result(timeout=10) for f in (first, *later)] == ["ok", "ok", "ok"]
    assert flaky.calls[-1] == ids  # one commit for all three, not a queue of batches
    assert {v.id: v.state for v in store.list_jobs(limit=10)} == dict.fromkeys(ids, "done")
    writer.close()


def test_after_giving_up_every_waiting_result_hears_why(store: Store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://127.0.0.1/{i}") for i in range(2)])
    flaky = FlakyStore(store)
    flaky.down.set()
    writer = ResultWriter(flaky, give_up_after=0.5)  # type: ignore[arg-type]
    futures = [writer.add(record(i)) for i in ids]
    for future in futures:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            future.result(timeout=10)
    assert {v.state for v in store.list_jobs(limit=10)} == {"queued"}  # nothing half-stored
    writer.close()


def test_a_result_the_database_refuses_fails_alone_not_its_whole_batch(store: Store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://127.0.0.1/{i}") for i in range(3)])
    flaky = FlakyStore(store, refuse=ids[1])
    flaky.down.set()  # so that all three meet in one batch
    writer = ResultWriter(flaky, give_up_after=30)  # type: ignore[arg-type]
    futures = [writer.add(record(i)) for i in ids]
    assert flaky.failed.wait(5)
    flaky.down.clear()
    assert futures[0].result(timeout=10) == "ok" and futures[2].result(timeout=10) == "ok"
    with pytest.raises(ValueError, match="NUL"):
        futures[1].result(timeout=10)
    assert ids in flaky.calls  # they did share a batch
    assert {v.id: v.state for v in store.list_jobs(limit=10)} == {ids[0]: "done", ids[1]: "queued", ids[2]: "done"}
    writer.close()


class DownAfterRefusal(FlakyStore):
    """Refuses one result, and the database goes away just after that (mid fallback)."""

    def store_results(self, records, *, started=()) -> int:
        if len(records) == 1 and records[0].job_id == self.refuse:
            self.calls.append([self.refuse])
            self.down.set()
            raise ValueError("A string literal cannot contain NUL (0x00) characters.")
        return super().store_results(records, started=started)


def test_the_one_at_a_time_fallback_keeps_the_batch_window_through_an_outage(store: Store) -> None:
    """The fallback once retried each result for the whole window in turn: six results and
    an outage held the last message 6 windows, past RabbitMQ's consumer timeout."""
    ids = store.insert_jobs(None, [NewJob(f"http://127.0.0.1/{i}") for i in range(6)])
    flaky = DownAfterRefusal(store, refuse=ids[0])
    flaky.down.set()  # so that all six meet in one batch
    window = 1.5
    writer = ResultWriter(flaky, give_up_after=window)  # type: ignore[arg-type]
    started = time.monotonic()
    futures = [writer.add(record(i)) for i in ids]
    assert flaky.failed.wait(5)
    flaky.down.clear()  # the batch is refused (ids[0]); then, one at a time, the database goes
    for future in futures[1:]:
        with pytest.raises(StoreUnavailable):
            future.result(timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < 2 * window, f"the last result waited {elapsed:.1f} s, more than one window of {window} s"
    with pytest.raises(ValueError, match="NUL"):
        futures[0].result(timeout=1)
    writer.close()
