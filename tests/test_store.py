"""The store on SQLite (embedded) and on real PostgreSQL: the same behaviour on both."""

from datetime import UTC, datetime, timedelta

import pytest

from db import JobFilter, NewJob, ResultRecord, open_store, utcnow


def result(job_id: int, ms: float = 10.0, ok: bool = True, code: int | None = 200, outcome: str = "ok") -> ResultRecord:
    return ResultRecord(job_id=job_id, outcome=outcome, ok=ok, status_code=code, total_ms=ms, attempts=1,
                        error=None if ok else "boom", final_url="http://x.test/", bytes=5, content_type="text/html",
                        title="t", checked_at=datetime.now(UTC), detail={"tls": None, "hops": []})


def test_results_are_idempotent_per_job(store) -> None:
    batch = store.create_batch("b")
    [job] = store.insert_jobs(batch.id, [NewJob("http://x.test/")])
    assert store.store_results([result(job)]) == 1
    assert store.store_results([result(job, ms=99)]) == 0  # a redelivery never makes a second row
    view = store.get_job(job)
    assert view.state == "done" and view.total_ms == 10.0 and view.detail == {"tls": None, "hops": []}
    with store.dialect.transaction() as cur:
        cur.execute("SELECT count(*) FROM results WHERE job_id = %s", (job,))
        assert cur.fetchone()[0] == 1


def test_running_never_overwrites_done(store) -> None:
    [job] = store.insert_jobs(None, [NewJob("http://x.test/")])
    store.store_results([result(job)])
    store.mark_running([(job, utcnow())])
    assert store.get_job(job).state == "done"


def test_keyset_pages_cover_everything_once_in_every_order(store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://h{i}.test/") for i in range(57)])
    store.store_results([result(i, ms=float(i % 7), code=200 + i % 3) for i in ids[:40]])
    for order, expected in [("newest", 57), ("oldest", 57), ("latency", 40), ("status", 40), ("checked", 40)]:
        seen: list[int] = []
        after = None
        while True:
            page = store.list_jobs(order=order, limit=10, after=after)
            if not page:
                break
            seen.extend(v.id for v in page)
            after = store.keyset(page[-1], order)
        assert len(seen) == expected and len(set(seen)) == expected, order
        back = store.list_jobs(order=order, limit=10,
                               before=store.keyset(store.list_jobs(order=order, limit=21)[-1], order))
        assert [v.id for v in back] == seen[10:20], order


def test_filters_run_in_sql(store) -> None:
    b1, b2 = store.create_batch("nightly"), store.create_batch("other")
    ids1 = store.insert_jobs(b1.id, [NewJob("http://a.test/x_1"), NewJob("http://b.test/")])
    ids2 = store.insert_jobs(b2.id, [NewJob("http://a.test/x%2")])
    store.store_results([result(ids1[0]), result(ids1[1], ok=False, code=500, outcome="http_error")])
    assert [v.id for v in store.list_jobs(JobFilter(batch="nightly"), order="oldest")] == ids1
    assert [v.id for v in store.list_jobs(JobFilter(failed=True))] == [ids1[1]]
    assert [v.id for v in store.list_jobs(JobFilter(outcome="ok"))] == [ids1[0]]
    assert [v.id for v in store.list_jobs(JobFilter(state="queued"))] == ids2
    assert [v.id for v in store.list_jobs(JobFilter(text="x_"))] == [ids1[0]]  # _ is literal, not a wildcard
    assert [v.id for v in store.list_jobs(JobFilter(text="X%"))] == ids2
    assert store.count_jobs(JobFilter(text="a.test")) == 2


def test_counts_match_what_each_order_pages_through(store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://c{i}.test/") for i in range(5)])
    store.store_results([result(ids[0]), result(ids[1], ok=False, code=500, outcome="http_error")])
    assert store.count_jobs() == 5 and store.count_jobs(order="latency") == 2  # only jobs with a result
    assert store.count_jobs(JobFilter(failed=True), order="status") == 1
    assert store.count_jobs(above_id=ids[2]) == 2  # rows that arrived above a known one
    for order in ("newest", "latency", "checked"):
        assert store.count_jobs(order=order) == len(store.list_jobs(order=order, limit=100))
    with pytest.raises(ValueError, match="unknown order 'fastest'"):
        store.count_jobs(order="fastest")


def test_unpublished_jobs_are_the_queued_ones_the_broker_never_confirmed(store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://u{i}.test/") for i in range(4)])
    store.mark_published(ids[:1])
    store.mark_publish_failed(ids[1:3], "broker unreachable")
    store.store_results([result(ids[2])])  # a copy got through after all
    assert [v.id for v in store.unsent_jobs()] == [ids[1]]


def test_idempotency_key_returns_the_earlier_batch(store) -> None:
    first = store.create_batch("cron", idempotency_key="2026-11-27")
    again = store.create_batch("cron", idempotency_key="2026-11-27")
    assert again.existed and again.id == first.id and not first.existed


def test_stale_prune_counts_and_heartbeats(store) -> None:
    from db import WorkerBeat

    old = datetime.now(UTC) - timedelta(days=40)
    ids = store.insert_jobs(None, [NewJob("http://a.test/"), NewJob("http://b.test/")], now=old)
    store.store_results([result(ids[0])])
    assert [v.id for v in store.stale_jobs(timedelta(minutes=5))] == [ids[1]]
    counts = store.counts()
    assert (counts.queued, counts.done, counts.ok, counts.unpublished) == (1, 1, 1, 1)
    assert store.prune(timedelta(days=30)) == 1  # only the done one
    assert store.count_jobs() == 1
    now = datetime.now(UTC)
    store.heartbeat(WorkerBeat("h:1", "h", 1, "q", 8, 5, now, now))
    store.heartbeat(WorkerBeat("h:2", "h", 2, "q", 8, 5, now - timedelta(hours=1), now - timedelta(minutes=5)))
    assert [w.id for w in store.workers()] == ["h:1"]


def test_listener_hears_a_write_made_before_its_first_wait(store) -> None:
    """Callers look (are my jobs done?) and then wait: what lands in between must be heard,
    or `submit --wait` sits out its polling interval."""
    listener = store.listener()
    try:
        store.insert_jobs(None, [NewJob("http://between.test/")])
        assert listener.wait(2) is True
    finally:
        listener.close()


def test_listener_hears_a_write(store) -> None:
    listener = store.listener()
    try:
        listener.wait(0.01)
        store.insert_jobs(None, [NewJob("http://a.test/")])
        assert listener.wait(5) is True
    finally:
        listener.close()


def test_bad_database_urls_say_what_is_wrong() -> None:
    from db import StoreConfigError, StoreUnavailable

    with pytest.raises(StoreConfigError, match="unsupported scheme 'mysql'"):
        open_store("mysql://root:pw@h/db")
    with pytest.raises(StoreUnavailable) as info:
        open_store("postgresql://u:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(info.value)
