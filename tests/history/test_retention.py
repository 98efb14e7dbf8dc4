"""Retention that does not bloat: a fleet that checks the same URLs every day and prunes
the oldest day keeps its jobs and results tables the same size, on the real PostgreSQL
(where a deleted row's space is reused only once a vacuum has freed it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db import NewJob, ResultRecord, open_store
from tests.support.services import wait_until

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
URLS = 1000  # a day of checks: a few dozen pages of each table and index


def check_a_day(store, day: datetime) -> None:
    """Every URL submitted and checked once, as workers store results (batches of 250)."""
    ids = store.insert_jobs(None, [NewJob(f"http://u{i}.test/") for i in range(URLS)], now=day)
    for lo in range(0, len(ids), 250):
        at = day + timedelta(minutes=5)
        store.store_results([ResultRecord(job_id=j, outcome="ok", ok=True, attempts=1, status_code=200,
                                          total_ms=float(10 + j % 300), checked_at=at) for j in ids[lo:lo + 250]],
                            started=[(j, at) for j in ids[lo:lo + 250]])


def size(store) -> int:
    """Bytes of jobs and results with their indexes and TOAST."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT pg_total_relation_size('jobs') + pg_total_relation_size('results')")
        return int(cur.fetchone()[0])


def horizon_holders(store) -> list[tuple]:
    """Other sessions of this database, and processes of none (PostgreSQL counts those for
    every database), that hold a snapshot: their xmin keeps VACUUM from freeing what prune
    deleted. Who they are, should the size not settle."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT pid, backend_type, application_name, state, backend_xmin::text, left(query, 80)"
                    " FROM pg_stat_activity WHERE (datname = current_database() OR datid IS NULL)"
                    " AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL")
        return [tuple(row) for row in cur.fetchall()]


def test_a_day_in_and_the_oldest_day_pruned_keeps_the_tables_the_same_size(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        empty = size(store)
        check_a_day(store, DAY0)
        check_a_day(store, DAY0 + timedelta(days=1))
        a_day = (size(store) - empty) // 2
        after: list[int] = []
        held: list[tuple] = []
        for k in range(2, 12):  # keep two days: day k in, day k - 2 out
            check_a_day(store, DAY0 + timedelta(days=k))
            # What this test measures needs what a fleet's nightly prune has: no other session
            # holding a snapshot (its xmin would keep VACUUM from freeing the day). In the suite
            # one may be left by an earlier test of this process (same database) or be a backend
            # of no database yet; wait for it to go. A failure lists them.
            wait_until(lambda: not horizon_holders(store), 30, interval=0.05,
                       message="no other session of this database holding a snapshot")
            assert store.prune(timedelta(days=2), now=DAY0 + timedelta(days=k, hours=12)) == URLS
            after.append(size(store))
            held = horizon_holders(store) or held
        # The space of a pruned day is reused by the next days: the size settles within the
        # first rounds (the B-tree pages a vacuum empties are reused after the next one; the
        # heap's empty end may be cut off and grown again) and then stays put. Tables that
        # kept each day's space would grow by six days over the last six rounds.
        settled = max(after[:4])
        assert max(after[4:]) - settled < a_day // 4, (a_day, after, held)
        assert settled < empty + 6 * a_day, (a_day, after)  # three days of rows, and the slack
    finally:
        store.close()
