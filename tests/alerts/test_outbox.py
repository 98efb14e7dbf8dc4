"""Alerts end to end below the CLI: changes queued in their transaction (as the history's
hook does), delivered by the sender to a loopback JSON webhook through Apprise, on SQLite
and real PostgreSQL; the fleet cases (two sender processes, a killed one) on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from db import alerts as outbox
from db import open_store
from runner.check.policy import AddressPolicy
from runner.jobs.alerts import AlertSender
from tests.support.services import wait_until
from tests.support.webhook import Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Change:
    """The attributes of db.models.Change (issue 21) that queue_alerts reads."""

    url_id: int
    url: str
    change: str
    from_state: str | None
    to_state: str
    at: datetime
    job_id: int
    batch_id: int | None
    outcome: str
    status_code: int | None = None
    error: str | None = None
    region: str | None = None


def change(n: int, kind: str, batch_id: int | None, *, url: str | None = None, region: str | None = None) -> Change:
    failing = kind in ("new_failure", "still_failing")
    before = {"new_failure": "ok", "recovered": "failing", "still_failing": "failing", "new": None,
              "slower": "ok"}[kind]
    return Change(n, url or f"http://site.test/page/{n}", kind, before, "failing" if failing else "ok",
                  datetime.now(UTC), n, batch_id, "http_error" if failing else "ok", 503 if failing else 200,
                  "503 Service Unavailable" if failing else None, region)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, sqlite_url: str):
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url)
    outbox._CACHE.pop(s.dialect, None)
    yield s
    s.close()


def record(store, changes) -> int:
    """What the history's _on_changes hook does: queue in the transaction that records them."""
    d = store.dialect
    with d.transaction() as cur:
        return outbox.queue_alerts(cur, d, changes)


def sender(store, **kw) -> AlertSender:
    kw = {"timeout": 2.0, "retry_initial": 0.01, "retry_max": 0.05, **kw}
    return AlertSender(store, AddressPolicy(), worker="test-sender", **kw)


def drain(s: AlertSender, receiver: Receiver, want: int, timeout: float = 30) -> None:
    wait_until(lambda: s.run_once() >= 0 and receiver.count() >= want, timeout, interval=0.02,
               message=f"{want} messages at the receiver")


def test_two_new_failures_and_two_recoveries_send_exactly_those(store) -> None:
    with Receiver() as receiver:
        outbox.add_alert(store.dialect, "ops", receiver.url)
        night = store.create_batch("night2")
        changes = [change(1, "new_failure", night.id), change(2, "new_failure", night.id),
                   change(3, "recovered", night.id), change(4, "recovered", night.id),
                   change(5, "still_failing", night.id), change(6, "still_failing", night.id),
                   change(7, "new", night.id), change(8, "slower", night.id)]
        assert record(store, changes) == 4
        s = sender(store)
        drain(s, receiver, 4)
        assert s.run_once() == 0  # nothing more is due
        titles = sorted(receiver.titles())
        assert titles == sorted([
            "urltester: new_failure: http://site.test/page/1", "urltester: new_failure: http://site.test/page/2",
            "urltester: recovered: http://site.test/page/3", "urltester: recovered: http://site.test/page/4"])
        body = next(m["message"] for m in receiver.messages if m["title"].endswith("/page/1"))
        for line in ("Change: new_failure (ok → failing)", "Outcome: http_error", "Status code: 503",
                     "Error: 503 Service Unavailable", "Batch: night2"):
            assert line in body
        assert {r[3] for r in outbox.outbox_rows(store.dialect)} == {"sent"}
        assert outbox.list_alerts(store.dialect)[0].last_sent_at is not None


def test_500_changes_in_one_batch_send_one_summary(store) -> None:
    with Receiver() as receiver:
        outbox.add_alert(store.dialect, "ops", receiver.url)
        night = store.create_batch("nightly")
        changes = [change(i, "new_failure" if i % 2 else "recovered", night.id) for i in range(500)]
        assert record(store, changes) == 500
        s = sender(store)
        drain(s, receiver, 1)
        assert s.run_once() == 0
        assert receiver.count() == 1
        message = receiver.messages[0]
        assert message["title"] == "urltester: 500 changes in batch nightly"
        body = message["message"]
        assert "new_failure: 250, recovered: 250" in body
        assert body.count("http://site.test/page/") == 20
        assert "… and 480 more" in body
        assert "runner changes --batch nightly" in body


def test_a_batch_still_running_is_told_once_it_ends(store) -> None:
    from db import NewJob

    with Receiver() as receiver:
        outbox.add_alert(store.dialect, "ops", receiver.url)
        batch = store.create_batch("running")
        store.insert_jobs(batch.id, [NewJob(url="http://site.test/a")])
        record(store, [change(1, "new_failure", batch.id)])
        s = sender(store)
        assert s.run_once() == 0  # its batch has a job queued: wait for the rest of the batch
        with store.dialect.transaction() as cur:
            cur.execute("UPDATE jobs SET state = 'done'")
        drain(s, receiver, 1)


def test_a_receiver_that_fails_three_times_then_answers_gets_it_once(store) -> None:
    with Receiver(fail_first=3) as receiver:
        outbox.add_alert(store.dialect, "ops", receiver.url)
        record(store, [change(1, "new_failure", store.create_batch("b").id)])
        s = sender(store)
        drain(s, receiver, 1)
        for _ in range(3):
            s.run_once()
        assert receiver.count() == 1
        assert receiver.requests == 4
        rows = outbox.outbox_rows(store.dialect)
        assert [(r[3], r[4]) for r in rows] == [("sent", 4)]
        alert = outbox.list_alerts(store.dialect)[0]
        assert alert.last_error and "503" in alert.last_error  # the last error stays on view


def test_after_24_hours_a_row_is_given_up_with_the_reason(store) -> None:
    clock = [datetime.now(UTC)]
    outbox.add_alert(store.dialect, "ops", "json://127.0.0.1:9/refused")  # nothing listens on port 9
    record(store, [change(1, "new_failure", store.create_batch("b").id)])
    s = sender(store, now=lambda: clock[0])
    s.run_once()
    assert outbox.outbox_rows(store.dialect)[0][3] == "pending"
    clock[0] += timedelta(hours=25)
    s.run_once()
    assert outbox.outbox_rows(store.dialect)[0][3] == "failed"
    alert = outbox.list_alerts(store.dialect)[0]
    assert alert.failed == 1 and "127.0.0.1" in alert.last_error


def test_deny_private_refuses_the_target_at_delivery(store) -> None:
    with Receiver() as receiver:
        outbox.add_alert(store.dialect, "ops", receiver.url)
        record(store, [change(1, "new_failure", store.create_batch("b").id)])
        s = AlertSender(store, AddressPolicy(deny_private=True), worker="w")
        s.run_once()
        assert receiver.requests == 0
        assert outbox.outbox_rows(store.dialect)[0][3] == "failed"  # not worth retrying
        assert "loopback" in outbox.list_alerts(store.dialect)[0].last_error


# ---------------------------------------------------------------------------- the fleet


def start_sender(url: str, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.alert_sender", url, name], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.postgres
def test_two_sender_processes_never_send_one_row_twice(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with Receiver() as receiver:
            outbox.add_alert(store.dialect, "ops", receiver.url)
            batches = [store.create_batch(f"b{i}") for i in range(150)]  # a group each: one message each
            record(store, [change(i, "new_failure", b.id) for i, b in enumerate(batches)])
            procs = [start_sender(pg_url, "sender-a"), start_sender(pg_url, "sender-b")]
            try:
                wait_until(lambda: all(r[3] == "sent" for r in outbox.outbox_rows(store.dialect)), 60,
                           message="every row sent")
            finally:
                for p in procs:
                    stop(p)
            titles = receiver.titles()
            assert len(titles) == 150 and len(set(titles)) == 150
            with store.dialect.transaction() as cur:
                cur.execute("SELECT claimed_by, count(*) FROM alert_outbox GROUP BY claimed_by")
                by = dict(cur.fetchall())
            assert set(by) <= {"sender-a", "sender-b"} and sum(by.values()) == 150
    finally:
        store.close()


@pytest.mark.postgres
def test_a_killed_senders_claimed_row_is_delivered_by_another(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with Receiver(hold=True) as receiver:
            outbox.add_alert(store.dialect, "ops", receiver.url)
            record(store, [change(1, "new_failure", store.create_batch("b").id)])
            first = start_sender(pg_url, "sender-killed")
            try:
                assert receiver.arrived.wait(30)  # mid-delivery, the row claimed
                assert outbox.outbox_rows(store.dialect)[0][3] == "sending"
                os.killpg(first.pid, signal.SIGKILL)
                first.wait(10)
            finally:
                stop(first)
            receiver.arrived.clear()
            receiver.release.set()
            second = start_sender(pg_url, "sender-alive")
            try:
                wait_until(lambda: outbox.outbox_rows(store.dialect)[0][3] == "sent", 60, message="row sent")
            finally:
                stop(second)
            assert receiver.titles() == ["urltester: new_failure: http://site.test/page/1"]
            with store.dialect.transaction() as cur:
                cur.execute("SELECT claimed_by FROM alert_outbox")
                assert cur.fetchone()[0] == "sender-alive"
    finally:
        store.close()


def test_a_service_that_hangs_costs_the_sender_its_timeout(store) -> None:
    import time

    with Receiver(hold=True) as receiver:
        outbox.add_alert(store.dialect, "ops", receiver.url)
        record(store, [change(1, "new_failure", store.create_batch("b").id)])
        s = sender(store, timeout=1.0)
        started = time.monotonic()
        assert s.run_once() == 1
        assert time.monotonic() - started < 10  # the read timeout, never the service's silence
        [(_, _, _, state, attempts)] = outbox.outbox_rows(store.dialect)
        assert (state, attempts) == ("pending", 1)
