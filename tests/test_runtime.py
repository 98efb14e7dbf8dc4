"""The one way jobs enter (Runtime.submit over the intake), on the embedded store, inline."""

from __future__ import annotations

from db import JobFilter
from db.batches import batch_summary
from runner.jobs.runtime import Runtime
from runner.jobs.settings import from_env
from runner.taskq.memory import MemoryBroker
from tests.support.services import wait_until


def test_inline_submit_stores_every_result_before_it_returns(sqlite_url, target) -> None:
    rt = Runtime(from_env({}, database_url=sqlite_url), broker=MemoryBroker(inline=True))
    try:
        report = rt.submit([target.url("/ok"), target.url("/status/404"), "ftp://x.test/", target.url("/ok")])
        views = rt.store.list_jobs(JobFilter(ids=tuple(report.job_ids)), order="oldest")
    finally:
        rt.close()
    assert [r.reason for r in report.rejected] == ["unsupported scheme 'ftp' (use http or https)"]
    assert [(v.state, v.outcome) for v in views] == [("done", "ok"), ("done", "http_error"), ("done", "ok")]


def test_submit_can_drop_duplicates_and_counts_them(sqlite_url, target) -> None:
    rt = Runtime(from_env({}, database_url=sqlite_url), broker=MemoryBroker(inline=True))
    try:
        report = rt.submit([target.url("/ok")] * 3 + [target.url("/ok?b")], keep_duplicates=False)
    finally:
        rt.close()
    assert len(report.job_ids) == 2 and report.duplicates == 2


def test_a_large_submit_goes_in_chunks_and_keeps_its_order(sqlite_url) -> None:
    from runner.jobs.intake import FIRST_CHUNK

    rt = Runtime(from_env({}, database_url=sqlite_url), broker=MemoryBroker(inline=True))
    rt.app.tasks["check"].fn = lambda job_id, url, options: "skipped"  # recording, not checking
    try:
        urls = [f"https://a.test/{i}" for i in range(FIRST_CHUNK + 700)]
        report = rt.submit(urls)
        views = rt.store.list_jobs(JobFilter(ids=tuple(report.job_ids)), order="oldest", limit=len(urls))
        total = batch_summary(rt.store, report.batch.id).total
    finally:
        rt.close()
    assert [v.url for v in views] == urls and total == len(urls)


def test_redelivered_calls_ask_whether_their_jobs_are_done_together(sqlite_url) -> None:
    """A worker taking over a killed one's messages: a thousand redelivered calls at once.
    One query for the calls asking together, not one each (12 s through a 20 ms WAN).

    The first query stands for a slow link: it returns once every other thread has asked
    (how long that takes is the scheduler's, so the test waits for it rather than sleeping
    a link's 20 ms, which a loaded machine can outlast). Every question asked meanwhile must
    then be answered by one more query."""
    import threading

    from db import ResultRecord, open_store, utcnow
    from db.store import NewJob
    from runner.jobs.tasks import DoneLookup

    store = open_store(sqlite_url)
    try:
        ids = store.insert_jobs(None, [NewJob(f"https://a.test/{i}", "{}") for i in range(200)])
        store.store_results([ResultRecord(job_id=i, outcome="ok", ok=True, status_code=200, total_ms=1.0, attempts=1,
                                          bytes=0, content_type="text/html", checked_at=utcnow()) for i in ids[:50]])
        queries: list[int] = []
        asked = store.skip_ids
        lookup = DoneLookup(store)

        def counting(job_ids, **kw):  # the real query, counted; the first one over a slow link
            if not queries:
                wait_until(lambda: len(job_ids) + lookup._gather.waiting() >= len(ids), 30, interval=0.005,
                           message="every other thread to ask while the first query is out")
            queries.append(len(job_ids))
            return asked(job_ids, **kw)

        store.skip_ids = counting  # type: ignore[method-assign]
        answers: dict[int, bool] = {}
        go = threading.Barrier(len(ids))

        def ask(job_id: int) -> None:
            go.wait()
            answers[job_id] = lookup.skip(job_id)

        threads = [threading.Thread(target=ask, args=(i,)) for i in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        store.close()
    assert answers == {i: i in ids[:50] for i in ids}
    assert sum(queries) == len(ids) and len(queries) <= 2, queries
