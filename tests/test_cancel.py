"""Taking back queued jobs (``runner cancel``): the store on both databases, the command on
a terminal and in a script, and workers on real RabbitMQ and PostgreSQL dropping the
messages of cancelled jobs, first deliveries and redelivered ones alike."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from db import JobFilter, NewJob, ResultRecord, open_store, utcnow
from db.batches import batch_summary
from db.states import state_is
from runner.taskq.broker import AmqpBroker
from tests.support.services import ROOT, run_cli, runner_env, wait_until, worker


def result(job_id: int) -> ResultRecord:
    return ResultRecord(job_id=job_id, outcome="ok", ok=True, status_code=200, total_ms=12.0, attempts=1,
                        bytes=5, content_type="text/html", checked_at=datetime.now(UTC), detail={"hops": []})


def states(store, ids) -> list[str]:
    return [store.get_job(i, detail=False).state for i in ids]


def test_only_queued_jobs_are_taken_back_and_nothing_stored_changes(store) -> None:
    a = store.create_batch("wrong file")
    b = store.create_batch("7")  # a batch named like another's id
    a_ids = store.insert_jobs(a.id, [NewJob(f"http://a.test/{i}") for i in range(5)])
    b_ids = store.insert_jobs(b.id, [NewJob(f"http://b.test/{i}") for i in range(3)])
    store.store_results([result(a_ids[0])])
    store.mark_running([(a_ids[1], utcnow())])
    before = store.get_job(a_ids[0])

    assert store.cancel_jobs(batch="wrong file", count_only=True) == 3
    assert states(store, a_ids) == ["done", "running", "queued", "queued", "queued"]  # counting changes nothing
    assert store.cancel_jobs(batch="wrong file") == 3
    assert states(store, a_ids) == ["done", "running", "cancelled", "cancelled", "cancelled"]
    assert store.get_job(a_ids[0]) == before  # the stored result, untouched
    assert states(store, b_ids) == ["queued"] * 3
    assert store.cancel_jobs(batch="wrong file") == 0  # again: nothing left to take back

    assert store.cancel_jobs(ids=[b_ids[0], a_ids[0], a_ids[1]]) == 1  # only the queued one of these
    assert store.cancel_jobs(batch=a.id) == 0  # by exact id (an int): not the batch named "7"
    assert store.cancel_jobs(count_only=True) == 2
    assert store.cancel_jobs() == 2  # every queued job
    assert store.counts().cancelled == 6 and store.counts().queued == 0
    assert store.counts().total == 8
    assert batch_summary(store, a.id).cancelled == 3
    assert [v.id for v in store.list_jobs(JobFilter(state="cancelled"), order="oldest")] == [*a_ids[2:], *b_ids]
    assert store.count_jobs(JobFilter(state="cancelled", batch="7")) == 3


def test_a_cancelled_job_is_never_run_checked_stored_or_requeued(store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://c.test/{i}") for i in range(3)])
    store.store_results([result(ids[2])])
    assert store.cancel_jobs(ids=ids[:2]) == 2
    store.mark_running([(ids[0], utcnow())])  # a worker's late "running" mark does not bring it back
    # a check that was in flight: dropped
    assert store.store_results([result(ids[0])], started=[(ids[1], utcnow())]) == 0
    assert states(store, ids) == ["cancelled", "cancelled", "done"]
    assert store.get_job(ids[0]).outcome is None
    assert store.skip_ids(ids) == set(ids)  # cancelled, or already checked: a worker drops them
    assert store.stale_jobs(timedelta(0), now=datetime.now(UTC) + timedelta(hours=1)) == []
    assert store.prune(timedelta(0), now=datetime.now(UTC) + timedelta(hours=1)) == 3


def test_a_batch_is_taken_back_by_one_mark_that_every_read_sees(store) -> None:
    """``cancel --batch`` marks the batch, not each row: every listing, count and filter
    says cancelled at once, nothing moves a taken-back job on, and the rows follow later."""
    from db.grid import quick_counts

    oops, keep = store.create_batch("oops"), store.create_batch("keep")
    ids = store.insert_jobs(oops.id, [NewJob(f"http://o.test/{i}") for i in range(6)])
    kept = store.insert_jobs(keep.id, [NewJob("http://k.test/1")])
    [loose] = store.insert_jobs(None, [NewJob("http://l.test/1")])
    store.store_results([result(ids[0])])
    store.mark_running([(ids[1], utcnow())])  # being checked when the batch is taken back
    done = store.get_job(ids[0])

    assert store.cancel_jobs(batch="oops") == 4
    assert states(store, ids) == ["done", "running", *["cancelled"] * 4]
    assert store.get_job(ids[0]) == done  # nothing stored changes
    assert [v.id for v in store.list_jobs(JobFilter(state="cancelled"), order="oldest")] == ids[2:]
    assert [v.id for v in store.list_jobs(JobFilter(state="queued"), order="oldest")] == [*kept, loose]
    assert store.count_jobs(JobFilter(state="cancelled", batch="oops")) == 4
    assert store.count_jobs(JobFilter(state="queued", batch="oops")) == 0
    for counts in (store.counts(), quick_counts(store)):
        assert (counts.queued, counts.running, counts.done, counts.cancelled) == (2, 1, 1, 4)
    summary = batch_summary(store, oops.id)
    assert (summary.queued, summary.running, summary.done, summary.cancelled) == (0, 1, 1, 4)
    assert store.unsent_jobs(batch_id=oops.id) == []  # a re-run import publishes none of them
    later = datetime.now(UTC) + timedelta(hours=1)
    assert {v.id for v in store.stale_jobs(timedelta(0), now=later)} == {ids[1], *kept, loose}
    assert store.skip_ids(ids) == {ids[0], *ids[2:]}  # the workers drop them (and the done one)

    # A late running mark, or a check that was in flight, never brings one back.
    store.mark_running([(ids[2], utcnow())])
    assert store.store_results([result(ids[3])], started=[(ids[4], utcnow())]) == 0
    # The job being checked at that moment is stored as checked.
    assert store.store_results([result(ids[1])]) == 1
    assert states(store, ids) == ["done", "done", *["cancelled"] * 4]
    assert store.get_job(ids[3]).outcome is None
    # A job recorded in the batch later (an import still running) is taken back too.
    [late] = store.insert_jobs(oops.id, [NewJob("http://o.test/late")])
    assert store.get_job(late).state == "cancelled" and late in store.skip_ids([late])

    assert store.cancel_jobs(batch="oops", count_only=True) == 0  # taken back already
    assert store.cancel_jobs(batch="oops") == 0

    def rows() -> list[str]:
        with store.dialect.transaction(write=False) as cur:
            cur.execute("SELECT state FROM jobs WHERE batch_id = %s ORDER BY id", (oops.id,))
            return [row[0] for row in cur.fetchall()]

    assert rows() == ["done", "done", *["queued"] * 5]  # the mark, not a million row writes
    assert store.settle_cancelled([*ids, late, *kept]) == 5  # what a worker does as it drops them
    assert rows() == ["done", "done", *["cancelled"] * 5]
    assert store.settle_cancelled([*ids, late]) == 0
    assert states(store, [*ids, late]) == ["done", "done", *["cancelled"] * 5]  # no read changes
    assert store.counts().cancelled == 5 and store.counts().queued == 2

    # --all-queued marks every batch with queued jobs, and takes back jobs without a batch row by row.
    assert store.cancel_jobs(count_only=True) == 2
    assert store.cancel_jobs() == 2
    assert states(store, [*kept, loose]) == ["cancelled", "cancelled"]
    assert store.prune(timedelta(0), now=later) == 9  # taken back with its batch or not: pruned


# ---------------------------------------------------------------------------- the command


def test_cancel_needs_one_selector_and_yes_without_a_terminal(sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    s = open_store(sqlite_url)
    batch = s.create_batch("nightly")
    s.insert_jobs(batch.id, [NewJob(f"http://d.test/{i}") for i in range(4)])
    s.close()
    for args in ([], ["--batch", "nightly", "--all-queued"], ["1", "--batch", "nightly"]):
        out = run_cli(["cancel", *args], env)
        assert out.returncode == 2 and "exactly one of" in out.stderr, args
    out = run_cli(["cancel", "--batch", "nightly"], env)  # a script that forgot --yes
    assert out.returncode == 2
    assert "cancel 4 queued jobs of batch 'nightly'? Not asked: no terminal; add --yes" in out.stderr
    out = run_cli(["cancel", "--batch", "nightly", "--yes"], env)
    assert (out.returncode, out.stdout) == (0, "cancelled 4 queued jobs of batch 'nightly'\n")
    out = run_cli(["cancel", "--all-queued"], env)
    assert (out.returncode, out.stdout) == (0, "no queued jobs in all: nothing to cancel\n")
    out = run_cli(["results", "--state", "cancelled", "--format", "csv"], env)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 5
    out = run_cli(["status", "--json"], env)
    assert '"cancelled": 4' in out.stdout


def on_a_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """``runner ARGS`` with a pseudo-terminal for stdin/stdout; ``answer`` typed once the
    prompt is shown. Returns the exit code and everything shown."""
    leader, follower = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], env=env, cwd=ROOT,
                            stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 60
    answered = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                shown += chunk
            if not answered and b"[y/N]" in shown:
                os.write(leader, answer.encode() + b"\n")
                answered = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(30), shown.decode(errors="replace").replace("\r\n", "\n")
    finally:
        os.close(leader)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_on_a_terminal_it_shows_the_count_and_asks_first(sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    s = open_store(sqlite_url)
    batch = s.create_batch("import of the wrong file")
    ids = s.insert_jobs(batch.id, [NewJob(f"http://e.test/{i}") for i in range(3)])
    code, shown = on_a_terminal(["cancel", "--batch", "import of the wrong file"], env, "n")
    assert code == 1, shown
    assert "cancel 3 queued jobs of batch 'import of the wrong file'? [y/N]" in shown
    assert "nothing cancelled" in shown
    assert states(s, ids) == ["queued"] * 3
    code, shown = on_a_terminal(["cancel", str(ids[0]), str(ids[1])], env, "y")
    assert code == 0, shown
    assert "cancel 2 queued jobs among jobs" in shown and "cancelled 2 queued jobs" in shown
    assert states(s, ids) == ["cancelled", "cancelled", "queued"]
    s.close()


# ---------------------------------------------------------------------------- workers


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.e2e
def test_workers_drop_cancelled_jobs_first_delivered_or_redelivered(pg_url, amqp_url, queue_name, target,
                                                                     tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    store = open_store(pg_url)
    broker = AmqpBroker(amqp_url, queue_name)
    slow = 5000  # ms: the first worker is killed while it holds these messages unacked

    def submit(batch: str, n: int, ms: int) -> list[int]:
        urls = [target.url(f"/{batch}/{i}?ms={ms}") for i in range(n)]
        out = run_cli(["submit", "--batch", batch, *urls], env)
        assert out.returncode == 0, out.stderr
        return [int(line.split()[0]) for line in out.stdout.splitlines()]

    def hits(batch: str) -> int:
        return sum(n for path, n in dict(target.hits).items() if path.startswith(f"/{batch}/"))

    def settled(ids: list[int]) -> bool:
        return all(s in ("done", "cancelled") for s in states(store, ids))

    # 1. Redelivered: a worker takes messages, dies holding them; the batch is cancelled;
    #    the next worker gets them again (redelivered) and checks none of the cancelled ones.
    held = submit("held", 20, slow)
    # prefetch 20: it holds every message of the batch unacked, two of them being checked.
    with worker(env, "--processes", "1", "--concurrency", "2", "--prefetch", "20",
                log_path=tmp_path / "w1.log") as first:
        wait_until(lambda: hits("held") >= 1, 30, message="the first worker to start a check")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    out = run_cli(["cancel", "--batch", "held", "--yes"], env)
    assert out.returncode == 0, out.stderr
    cancelled = int(out.stdout.split()[1])
    assert cancelled >= 18  # the two it was checking may have been marked running
    seen = hits("held")

    # 2. First deliveries, with the workers running: a batch cancelled while it is checked.
    wrong = submit("wrong", 600, 50)
    with worker(env, "--processes", "1", "--concurrency", "2", log_path=tmp_path / "w2.log"):
        wait_until(lambda: hits("wrong") >= 5, 60, message="some of the wrong batch checked")
        out = run_cli(["cancel", "--batch", "wrong", "--yes"], env)
        assert out.returncode == 0, out.stderr
        taken = int(out.stdout.split()[1])
        wait_until(lambda: settled(held) and settled(wrong), 120, 0.5, "every job done or cancelled")
        wait_until(lambda: broker.ping().ready == 0, 60, 0.5, "the queue to drain")
    # The second worker checked only the held jobs that were running (not cancelled) when it was cancelled.
    assert hits("held") - seen == states(store, held).count("done") <= 2
    assert states(store, held).count("cancelled") == cancelled
    assert states(store, wrong).count("cancelled") == taken > 0
    with store.dialect.transaction() as cur:
        cur.execute(f"SELECT count(*) FROM results r JOIN jobs j ON j.id = r.job_id WHERE {state_is('cancelled')}")
        assert cur.fetchone()[0] == 0  # no cancelled job has a result
    done_wrong = states(store, wrong).count("done")
    # Every done job was checked once; a cancelled one at most while in flight (2 threads).
    assert done_wrong <= hits("wrong") <= done_wrong + 2
    store.close()


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.e2e
def test_a_queued_batch_taken_back_shows_cancelled_at_once_and_is_never_checked(pg_url, amqp_url, queue_name,
                                                                                  target, tmp_path) -> None:
    """What a user sees: `runner cancel --batch` of a queued batch; at once every job not yet
    checked is cancelled in `runner results --batch`, `runner status` and the API; the
    workers started afterwards drop every message, store nothing for them, and the job
    checked before stays as it was."""
    import json

    from tests.api.conftest import serve

    env = runner_env(pg_url, amqp_url, queue_name)
    store = open_store(pg_url)
    broker = AmqpBroker(amqp_url, queue_name)

    def submit(n: int, tag: str) -> list[int]:
        out = run_cli(["submit", "--batch", "mixed", *(target.url(f"/mixed/{tag}{i}") for i in range(n))], env)
        assert out.returncode == 0, out.stderr
        return [int(line.split()[0]) for line in out.stdout.splitlines()]

    def results() -> dict[int, dict]:
        out = run_cli(["results", "--batch", "mixed", "--format", "json"], env)
        assert out.returncode == 0, out.stderr
        return {row["id"]: row for row in map(json.loads, out.stdout.splitlines())}

    [checked] = submit(1, "first")  # a job of the batch, checked before the cancel
    with worker(env, "--processes", "1", "--concurrency", "2", log_path=tmp_path / "w1.log"):
        wait_until(lambda: states(store, [checked]) == ["done"], 60, message="the first job checked")
    before = results()[checked]
    queued = submit(300, "q")  # the wrong file: queued, no worker running
    assert set(states(store, queued)) == {"queued"}

    with serve(env, tmp_path / "serve.log") as server:
        out = run_cli(["cancel", "--batch", "mixed", "--yes"], env)
        assert (out.returncode, out.stdout) == (0, "cancelled 300 queued jobs of batch 'mixed'\n"), out.stderr
        # At once, with no worker running: every list, count and filter says cancelled.
        shown = results()
        assert shown[checked] == before  # the job checked before: as it was
        assert {shown[i]["state"] for i in queued} == {"cancelled"}
        status = json.loads(run_cli(["status", "--json"], env).stdout)
        assert (status["jobs"]["queued"], status["jobs"]["cancelled"], status["jobs"]["done"]) == (0, 300, 1), status
        with server.client(server.token()) as api:
            page = api.get("/api/v1/jobs", params={"batch": "mixed", "state": "cancelled", "limit": 500}).json()
            assert sorted(j["id"] for j in page["jobs"]) == queued
            assert api.get("/api/v1/jobs", params={"batch": "mixed", "state": "queued"}).json()["jobs"] == []
            batch_id = store.get_job(queued[0], detail=False).batch_id
            summary = api.get(f"/api/v1/batches/{batch_id}").json()
            assert (summary["queued"], summary["cancelled"], summary["done"]) == (0, 300, 0), summary
            assert api.get(f"/api/v1/jobs/{queued[-1]}").json()["state"] == "cancelled"

    hits_before = sum(n for path, n in dict(target.hits).items() if path.startswith("/mixed/q"))
    assert hits_before == 0
    with worker(env, "--processes", "1", "--concurrency", "4", log_path=tmp_path / "w2.log"):
        wait_until(lambda: broker.ping().ready == 0, 120, 0.5, "the workers to drop the batch's messages")

        def rows_settled() -> bool:  # the workers turn the rows to what every read already says
            with store.dialect.transaction(write=False) as cur:
                cur.execute("SELECT count(*) FROM jobs WHERE state = 'cancelled'")
                return cur.fetchone()[0] == 300

        wait_until(rows_settled, 60, 0.5, "the dropped jobs' rows to say cancelled")
    assert sum(n for path, n in dict(target.hits).items() if path.startswith("/mixed/q")) == 0  # none checked
    shown = results()
    assert shown[checked] == before
    assert {shown[i]["state"] for i in queued} == {"cancelled"}
    assert all(shown[i]["outcome"] is None for i in queued)  # no result stored for any
    with store.dialect.transaction() as cur:
        cur.execute("SELECT count(*) FROM results")
        assert cur.fetchone()[0] == 1
    store.close()
    broker.close()
