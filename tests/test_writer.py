"""The result writer: batched commits that worker threads do not wait for (embedded SQLite)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from db import NewJob, ResultRecord, Store, StoreUnavailable, open_store, utcnow
from runner.writer import ResultWriter


class FlakyStore:
    """A real store whose ``store_results`` fails while ``down`` is set, and says what it got."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = threading.Event()
        self.calls: list[list[int]] = []
        self.failed = threading.Event()

    def store_results(self, records, *, started=()) -> int:  # noqa: ANN001
        self.calls.append([r.job_id for r in records])
        if self.down.is_set():
            self.failed.set()
            raise StoreUnavailable("database unreachable (test)")
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
    first = writer.submit(record(ids[0]))
    assert flaky.failed.wait(5)
    later = [writer.submit(record(i)) for i in ids[1:]]  # while the first batch is retried
    time.sleep(0.3)
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
    futures = [writer.submit(record(i)) for i in ids]
    for future in futures:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            future.result(timeout=10)
    assert {v.state for v in store.list_jobs(limit=10)} == {"queued"}  # nothing half-stored
    writer.close()
