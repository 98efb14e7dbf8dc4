"""Which changes an alert queues (SQLite, in the caller's transaction): kinds, --batch,
--contains, --state-of, reminders of still_failing, --min-regions; and the minute window
of changes without a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from db import alerts as outbox
from db import open_store
from tests.alerts.test_outbox import change, record


@pytest.fixture
def store(sqlite_url: str):
    s = open_store(sqlite_url)
    yield s
    s.close()


def queued(store) -> list[tuple[str, str]]:
    return [(r[1], r[2]) for r in outbox.outbox_rows(store.dialect) if r[3] == "pending"]


def test_default_kinds_are_new_failure_and_recovered(store) -> None:
    outbox.add_alert(store.dialect, "a", "json://127.0.0.1:9/")
    kinds = ["new_failure", "recovered", "new", "still_failing", "slower"]
    record(store, [change(i, k, None) for i, k in enumerate(kinds)])
    assert [c for _, c in queued(store)] == ["new_failure", "recovered"]


def test_on_names_new_and_slower(store) -> None:
    outbox.add_alert(store.dialect, "a", "json://127.0.0.1:9/", kinds=("new", "slower"))
    record(store, [change(i, k, None) for i, k in enumerate(["new_failure", "new", "slower"])])
    assert [c for _, c in queued(store)] == ["new", "slower"]


def test_batch_contains_and_state_of_narrow_what_is_told(store) -> None:
    d = store.dialect
    nightly, other = store.create_batch("nightly"), store.create_batch("other")
    outbox.add_alert(d, "nightly", "json://127.0.0.1:9/", batch="nightly")
    outbox.add_alert(d, "shop", "json://127.0.0.1:9/", contains="SHOP.example")
    outbox.add_alert(d, "listed", "json://127.0.0.1:9/", urls=["http://listed.test/"])
    record(store, [change(1, "new_failure", nightly.id, url="http://a.test/"),
                   change(2, "new_failure", other.id, url="http://www.shop.example.com/cart"),
                   change(3, "new_failure", other.id, url="http://listed.test/")])
    by_alert = {a.name: a.id for a in outbox.list_alerts(d)}
    with d.transaction() as cur:
        cur.execute("SELECT alert_id, url FROM alert_outbox ORDER BY id")
        rows = cur.fetchall()
    assert rows == [(by_alert["nightly"], "http://a.test/"), (by_alert["shop"], "http://www.shop.example.com/cart"),
                    (by_alert["listed"], "http://listed.test/")]


def test_still_failing_is_a_reminder_every_interval(store) -> None:
    d = store.dialect
    outbox.add_alert(d, "a", "json://127.0.0.1:9/", kinds=("new_failure", "still_failing"), reminder_s=3600)
    t0 = datetime.now(UTC)
    url = "http://down.test/"

    def at(minutes: int, kind: str) -> None:
        with d.transaction() as cur:
            outbox.queue_alerts(cur, d, [change(1, kind, None, url=url)], now=t0 + timedelta(minutes=minutes))

    at(0, "new_failure")
    at(10, "still_failing")  # told 10 minutes ago: no reminder yet
    at(59, "still_failing")
    at(61, "still_failing")  # an hour since: remind
    at(90, "still_failing")
    at(125, "still_failing")
    assert [c for _, c in queued(store)] == ["new_failure", "still_failing", "still_failing"]


def region_job(store, results: dict[str, bool]) -> int:
    """A job that named regions, with these regions' results in."""
    from db import NewJob

    [job_id] = store.insert_jobs(None, [NewJob(url="http://edge.test/")])
    d = store.dialect
    with d.transaction() as cur:
        for region, ok in results.items():
            cur.execute("INSERT INTO region_results (job_id, region, outcome, ok, attempts, checked_at) "
                        "VALUES (%s, %s, %s, %s, 1, %s)",
                        (job_id, region, "ok" if ok else "connect_refused", d.boolean(ok), d.ts(datetime.now(UTC))))
    return job_id


def test_by_default_the_jobs_quorum_decides(store) -> None:
    outbox.add_alert(store.dialect, "a", "json://127.0.0.1:9/")
    job = region_job(store, {"eu": False, "us": True})
    record(store, [change(job, "new_failure", None, url="http://edge.test/", region=None)])
    assert len(queued(store)) == 1


def test_a_job_without_regions_checked_in_a_named_region_is_told(store) -> None:
    outbox.add_alert(store.dialect, "a", "json://127.0.0.1:9/", min_regions=2)
    record(store, [change(1, "new_failure", None, region="eu-west")])  # its worker's region: no quorum
    assert len(queued(store)) == 1


def test_min_regions_tells_only_when_enough_regions_agree(store) -> None:
    d = store.dialect
    outbox.add_alert(d, "a", "json://127.0.0.1:9/", min_regions=2)
    one = region_job(store, {"eu": False, "us": True, "ap": True})
    record(store, [change(one, "new_failure", None, url="http://edge.test/", region=None)])
    assert queued(store) == []  # one region failed: not enough
    two = region_job(store, {"eu": False, "us": False, "ap": True})
    record(store, [change(two, "new_failure", None, url="http://edge.test/", region=None)])
    assert len(queued(store)) == 1
    [claim] = outbox.claim(d, "w")
    assert claim.payloads[0]["regions"] == ["eu", "us"]
    back = region_job(store, {"eu": True, "us": True, "ap": False})
    record(store, [change(back, "recovered", None, url="http://edge.test/", region=None)])
    assert [c for _, c in queued(store)] == ["recovered"]


def test_changes_without_a_batch_more_than_10_in_a_minute_end_in_a_summary(store) -> None:
    d = store.dialect
    outbox.add_alert(d, "a", "json://127.0.0.1:9/")
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    with d.transaction() as cur:
        outbox.queue_alerts(cur, d, [change(i, "new_failure", None) for i in range(3)], now=minute)
    singles = outbox.claim(d, "w", now=minute + timedelta(seconds=1))
    assert [c.summary for c in singles] == [False, False, False]
    with d.transaction() as cur:
        outbox.queue_alerts(cur, d, [change(i, "new_failure", None) for i in range(3, 15)],
                            now=minute + timedelta(seconds=2))
    assert outbox.claim(d, "w", now=minute + timedelta(seconds=3)) == []  # held to the minute's end
    [summary] = outbox.claim(d, "w", now=minute + timedelta(seconds=61))
    assert summary.summary and len(summary.ids) == 12 and summary.group_total == 15


def test_no_alert_costs_one_cached_read(store) -> None:
    d = store.dialect
    assert record(store, [change(1, "new_failure", None)]) == 0
    outbox.add_alert(d, "a", "json://127.0.0.1:9/")  # invalidates this process's cache
    assert record(store, [change(1, "new_failure", None)]) == 1
    outbox.remove_alert(d, "a")
    assert outbox.outbox_rows(d) == []


def test_delivered_rows_are_forgotten_after_a_month(store) -> None:
    d = store.dialect
    outbox.add_alert(d, "a", "json://127.0.0.1:9/")
    old = datetime.now(UTC) - timedelta(days=40)
    with d.transaction() as cur:
        outbox.queue_alerts(cur, d, [change(1, "new_failure", None)], now=old)
        outbox.queue_alerts(cur, d, [change(2, "new_failure", None)], now=old)
    [first, second] = outbox.claim(d, "w", now=old)
    outbox.settle(d, "w", first, now=old)
    record(store, [change(3, "new_failure", None)])
    assert outbox.forget_delivered(d, datetime.now(UTC) - timedelta(days=31)) == 1
    assert [r[1] for r in outbox.outbox_rows(d)] == ["http://site.test/page/2", "http://site.test/page/3"]


def test_an_alert_removed_by_another_process_never_fails_a_writer(store) -> None:
    d = store.dialect
    outbox.add_alert(d, "a", "json://127.0.0.1:9/")
    assert record(store, [change(1, "new_failure", None)]) == 1  # the alert is now cached
    with d.transaction() as cur:  # removed as another process would: this one's cache still has it
        cur.execute("DELETE FROM alerts WHERE name = 'a'")
    assert record(store, [change(2, "new_failure", None)]) == 1  # the result's transaction commits
    assert outbox.claim(d, "w") == []
    assert outbox.outbox_rows(d) == []


def test_a_batch_still_running_does_not_hold_up_the_others(store) -> None:
    from db import NewJob

    d = store.dialect
    outbox.add_alert(d, "a", "json://127.0.0.1:9/")
    running = []
    for i in range(12):
        batch = store.create_batch(f"running{i}")
        store.insert_jobs(batch.id, [NewJob(url=f"http://r.test/{i}")])
        running.append(change(i, "new_failure", batch.id))
    record(store, running)
    record(store, [change(100, "new_failure", store.create_batch("done").id)])
    claims = outbox.claim(d, "w")  # ten groups looked at, all waiting: pushed back
    claims += outbox.claim(d, "w")
    assert [c.payloads[0]["job_id"] for c in claims] == [100]
