"""A URL's state moves with each recorded result: the changes the store records equal a
plain replay of the outcomes, redeliveries and cancelled jobs move nothing, and several
writers at once lose no change (PostgreSQL's row lock on the URL)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from db import NewJob, ResultRecord, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def result(job_id: int, ok: bool, ms: float = 10.0, k: int = 0) -> ResultRecord:
    return ResultRecord(job_id=job_id, outcome="ok" if ok else "http_error", ok=ok, attempts=1,
                        status_code=200 if ok else 500, total_ms=ms, error=None if ok else "HTTP 500",
                        checked_at=T0 + timedelta(minutes=k))


def recorded(store) -> list[tuple]:
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT from_state, to_state, change, job_id FROM url_changes ORDER BY id")
        return [tuple(row) for row in cur.fetchall()]


def replay(checks: list[tuple[bool, float]], slow_ms: float | None, fail_after: int, recover_after: int) -> list[tuple]:
    """The rule of docs/history.md, written plainly: a state, two streaks."""
    state, fails, passes, out = None, 0, 0, []
    for i, (ok, ms) in enumerate(checks):
        fails, passes = (0, passes + 1) if ok else (fails + 1, 0)
        now = "failing" if not ok else "slow" if slow_ms is not None and ms > slow_ms else "ok"
        new = state
        if state is None:
            new, change = now, "new"
        elif state == "failing":
            change = "recovered" if ok and passes >= recover_after else None
        elif not ok:
            change = "new_failure" if fails >= fail_after else None
        else:
            change = None if now == state else ("slower" if now == "slow" else "recovered")
        if change is not None:
            new = "failing" if change == "new_failure" else now
            out.append((state, new, change, i))
            state = new
    return out


@settings(max_examples=60, deadline=None)
@given(checks=st.lists(st.tuples(st.booleans(), st.sampled_from([5.0, 50.0, 500.0])), min_size=1, max_size=25),
       slow_ms=st.sampled_from([None, 100.0]), fail_after=st.integers(1, 3), recover_after=st.integers(1, 3))
def test_recorded_changes_equal_a_plain_replay(checks, slow_ms, fail_after, recover_after) -> None:
    store = open_store("sqlite://")
    try:
        options = {"fail_after": fail_after, "recover_after": recover_after}
        if slow_ms is not None:
            options["slow_ms"] = slow_ms
        ids = store.insert_jobs(None, [NewJob("http://x.test/", options) for _ in checks])
        for k, (job_id, (ok, ms)) in enumerate(zip(ids, checks, strict=True)):
            store.store_results([result(job_id, ok, ms, k)])
            store.store_results([result(job_id, not ok, ms, k)])  # a redelivery: moves nothing
        expected = [(f, t, c, ids[i]) for f, t, c, i in replay(checks, slow_ms, fail_after, recover_after)]
        assert recorded(store) == expected
    finally:
        store.close()


def test_a_cancelled_job_never_counts(store) -> None:
    [first, cancelled] = store.insert_jobs(None, [NewJob("http://x.test/"), NewJob("http://x.test/")])
    store.store_results([result(first, True)])
    with store.dialect.transaction() as cur:
        cur.execute("UPDATE jobs SET state = 'cancelled' WHERE id = %s", (cancelled,))
    store.store_results([result(cancelled, False, k=1)])
    assert recorded(store) == [(None, "ok", "new", first)]


def test_started_and_done_in_one_write(store) -> None:
    """A job whose start and result are written together is done with its start time; a
    redelivery keeps the first start; a job cancelled while it ran stays cancelled, unstarted."""
    [both, later, cancelled] = store.insert_jobs(None, [NewJob(f"http://s{i}.test/") for i in range(3)])
    with store.dialect.transaction() as cur:
        cur.execute("UPDATE jobs SET state = 'cancelled' WHERE id = %s", (cancelled,))
    began = T0 - timedelta(seconds=5)
    store.store_results([result(both, True)], started=[(both, began), (later, began), (cancelled, began)])
    assert (store.get_job(both).state, store.get_job(both).started_at) == ("done", began)
    assert (store.get_job(later).state, store.get_job(later).started_at) == ("running", began)
    assert (store.get_job(cancelled).state, store.get_job(cancelled).started_at) == ("cancelled", None)
    store.store_results([result(both, False, k=1)], started=[(both, T0 + timedelta(minutes=1))])  # redelivered
    assert (store.get_job(both).state, store.get_job(both).started_at, store.get_job(both).ok) == ("done", began, True)
    store.store_results([result(later, True, k=2)])
    assert (store.get_job(later).state, store.get_job(later).started_at) == ("done", began)


def test_changes_reach_the_alerts_hook_in_the_results_transaction(store) -> None:
    seen: list = []
    store._on_changes = lambda cur, changes: seen.extend(changes)  # type: ignore[method-assign]
    batch = store.create_batch("nightly")
    [job] = store.insert_jobs(batch.id, [NewJob("http://user:pw@x.test/")])
    store.store_results([result(job, False)])
    [change] = seen
    assert (change.url, change.change, change.from_state, change.to_state, change.job_id, change.batch_id,
            change.outcome, change.status_code, change.error, change.region) == (
        "http://user:pw@x.test/", "new", None, "failing", job, batch.id, "http_error", 500, "HTTP 500", "default")
    assert change.at == T0 and isinstance(change.url_id, int)


def test_many_writers_on_one_url_lose_no_change(pg_url: str) -> None:
    """Eight threads record 100 results of one URL at once: every change follows the one
    before it (none lost, none doubled) and the URL ends where its last change put it."""
    store = open_store(pg_url, max_connections=8)
    try:
        ids = store.insert_jobs(None, [NewJob("http://one.test/") for _ in range(100)])
        go = threading.Barrier(8)

        def write(part: list[int]) -> None:
            go.wait()
            for job_id in part:
                store.store_results([result(job_id, job_id % 3 != 0, k=job_id)])

        threads = [threading.Thread(target=write, args=(ids[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        changes = recorded(store)
        assert changes[0][0] is None
        for before, after in zip(changes, changes[1:], strict=False):
            assert after[0] == before[1]
        with store.dialect.transaction(write=False) as cur:
            cur.execute("SELECT state, fails + passes FROM urls")
            state, streak = cur.fetchone()
        assert state == changes[-1][1] and streak >= 1
    finally:
        store.close()


def _picture(store) -> tuple:
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT url, state, fails, passes, last_job_id FROM urls ORDER BY url")
        urls = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT u.url, c.from_state, c.to_state, c.change, c.job_id FROM url_changes c "
                    "JOIN urls u ON u.id = c.url_id ORDER BY c.job_id, u.url")
        changes = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT u.url, r.grain, r.region, r.checks, r.ok, r.hist FROM url_rollups r "
                    "JOIN urls u ON u.id = r.url_id ORDER BY u.url, r.grain, r.region")
        rollups = [(*r[:5], json.loads(r[5])) for r in cur.fetchall()]
    return urls, changes, rollups


def test_the_backfill_builds_what_recording_built_and_resumes(store) -> None:
    from db.history import backfill

    ids = store.insert_jobs(None, [NewJob(f"http://h{i % 7}.test/", {"fail_after": 2}) for i in range(60)])
    for k, job_id in enumerate(ids):
        store.store_results([result(job_id, (k * 5) % 3 != 0, ms=float(k), k=k)])
    built = _picture(store)
    with store.dialect.transaction() as cur:  # as before issue 21: no URLs, no history
        cur.execute("UPDATE jobs SET url_id = NULL")
        for table in ("url_changes", "url_rollups", "urls"):
            cur.execute(f"DELETE FROM {table}")

    class Stop(Exception):
        pass

    def stop_after_first(done, at, top) -> None:
        raise Stop

    with pytest.raises(Stop):
        backfill(store, chunk=16, on_chunk=stop_after_first)
    assert backfill(store, chunk=16) == 60 - 16  # the first chunk stayed done
    assert backfill(store, chunk=16) == 0
    assert _picture(store) == built


def test_a_job_that_named_regions_adds_a_point_per_region_and_its_quorum(store) -> None:
    from dataclasses import replace

    from db.urls import get_url, recent_checks

    [job] = store.insert_jobs(None, [NewJob("http://r.test/", {"regions": ["eu", "us", "ap"], "quorum": "majority"})])
    store.store_results([replace(result(job, True, ms=10.0), region="eu")])
    store.store_results([replace(result(job, False, ms=900.0, k=1), region="us")])
    assert recorded(store) == []  # one ok, one failed: the quorum is still open
    store.store_results([replace(result(job, True, ms=30.0, k=2), region="ap")])
    assert recorded(store) == [(None, "ok", "new", job)]  # the job's quorum outcome moves the state
    view = get_url(store, "http://r.test/", since=T0 - timedelta(days=1))
    points = recent_checks(store, view.id)
    assert sorted((p.region or "", p.ok) for p in points) == [("", True), ("ap", True), ("eu", True), ("us", False)]
    assert [(p.region, p.status_code) for p in recent_checks(store, view.id, region="us")] == [("us", 500)]
    us = get_url(store, "http://r.test/", since=T0 - timedelta(days=1), region="us")
    assert (us.window.checks, us.window.ok, view.window.checks, view.window.ok) == (1, 0, 1, 1)
    assert 891 <= us.latency(0.5) <= 909  # within 1% of the 900 ms the us check took
