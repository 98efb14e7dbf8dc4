"""Retention that does not bloat: a fleet that checks the same URLs every day and prunes
the oldest day keeps its jobs and results tables the same size, on the real PostgreSQL
(where a deleted row's space is reused only once a vacuum has freed it).

What "the same size" can mean is set by how PostgreSQL reuses space. A heap row prune
deleted is freed by prune's own ``VACUUM``, and the next day takes its place. A B-tree page
the ``VACUUM`` empties is reused only once no transaction may still read it, and PostgreSQL
14 and 15 ask that of every transaction on the server, of every database (16 on: of this
database's): a transaction of another database open across the end of the ``VACUUM`` keeps
that day's index pages for the next ``VACUUM``, and the next day's entries extend the
indexes meanwhile. That step is one day of index pages at most, taken once: from then on
each day reuses the pages of the day pruned the night before. So the promise tested is:
the heap stays flat, and the tables never hold more than the days kept plus that one day of
index pages, in whatever round the step comes (in this suite another process's tests run
on the same server)."""

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


def sizes(store) -> tuple[int, int]:
    """Bytes of jobs and results: their heaps (with TOAST and maps), and their indexes."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT pg_table_size('jobs') + pg_table_size('results'),"
                    " pg_indexes_size('jobs') + pg_indexes_size('results')")
        heap, indexes = cur.fetchone()
        return int(heap), int(indexes)


def new_xid(store) -> str:
    """A transaction id handed out now (committed)."""
    with store.dialect.transaction() as cur:
        cur.execute("SELECT xid(pg_current_xact_id())::text")
        return str(cur.fetchone()[0])


def older_than(store, xid: str, *, database: bool) -> list[tuple]:
    """Other sessions whose transaction (its id or its snapshot) began before ``xid``; with
    ``database``, also every other session of this database holding a snapshot at all, and
    processes of no database yet. Who they are, should the size not settle."""
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT pid, datname, backend_type, state, backend_xid::text, backend_xmin::text,"
                    " left(query, 80) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND"
                    " (age(backend_xid) > age(%s::xid) OR age(backend_xmin) > age(%s::xid)"
                    "  OR (%s AND (datname = current_database() OR datid IS NULL) AND backend_xmin IS NOT NULL))",
                    (xid, xid, database))
        return [tuple(row) for row in cur.fetchall()]


def test_a_day_in_and_the_oldest_day_pruned_keeps_the_tables_the_same_size(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        empty_heap, empty_indexes = sizes(store)
        check_a_day(store, DAY0)
        check_a_day(store, DAY0 + timedelta(days=1))
        heap, indexes = sizes(store)
        a_day, a_day_of_indexes = (heap + indexes - empty_heap - empty_indexes) // 2, (indexes - empty_indexes) // 2
        after: list[tuple[int, int]] = []
        held: list[tuple] = []
        last_prune = new_xid(store)
        for k in range(2, 12):  # keep two days: day k in, day k - 2 out
            check_a_day(store, DAY0 + timedelta(days=k))
            # What a fleet's nightly prune has, and what this measures: no session of its
            # database holding a snapshot (its xmin would keep VACUUM from freeing the day's
            # rows), and, a day after the last prune, no transaction anywhere on the server
            # that was open then (it would keep the index pages the last VACUUM emptied from
            # this one). In the suite, other tests' sessions come and go; wait for them.
            wait_until(lambda since=last_prune: not older_than(store, since, database=True), 60, interval=0.05,
                       message="no other session holding a snapshot of this database or from before the last prune")
            assert store.prune(timedelta(days=2), now=DAY0 + timedelta(days=k, hours=12)) == URLS
            last_prune = new_xid(store)
            after.append(sizes(store))
            held = older_than(store, last_prune, database=True) or held
        heaps, totals = [h for h, _ in after], [h + i for h, i in after]
        # The heap: the space of a pruned day is reused by the next days, from the first
        # rounds on (its empty end may be cut off and grown again: hence the first rounds' max).
        assert max(heaps[4:]) - max(heaps[:4]) < a_day // 4, (a_day, after, held)
        # Heap and indexes: the first rounds' size, plus one day of index pages at most, in
        # whatever round it comes. Tables that kept each day's space would have grown by six
        # days over the last six rounds, indexes that never reused a page by six of theirs.
        settled = max(totals[:4])
        assert max(totals[4:]) - settled < a_day_of_indexes + a_day // 4, (a_day, a_day_of_indexes, after, held)
        assert settled < empty_heap + empty_indexes + 6 * a_day, (a_day, after)  # three days of rows, and slack
    finally:
        store.close()
