"""Regions below the CLI: the quorum rules, what users may type, the store's per-region
upsert and decision (SQLite and real PostgreSQL), migration 4 on a database with results,
and imports that name regions per line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from db import NO_WORKER, NewJob, ResultRecord, Store, migrations, open_store
from db.regional import region_results, waiting_regions
from db.regions import decide, need
from runner.errors import ConfigError, OptionError
from runner.jobs.regions import parse_placement, queue_for, report_no_worker, resolve
from tests.support.services import delete_queues, run_cli, runner_env


def result(job_id: int, region: str, ok: bool = True) -> ResultRecord:
    return ResultRecord(job_id=job_id, outcome="ok" if ok else "connect_refused", ok=ok,
                        status_code=200 if ok else None, total_ms=12.0, attempts=1,
                        error=None if ok else "refused", bytes=10, checked_at=datetime.now(UTC),
                        worker=f"w-{region}", region=region)


@pytest.mark.parametrize(("rule", "n", "wanted"), [("any", 3, 1), ("all", 3, 3), ("majority", 3, 2),
                                                   ("majority", 4, 3), ("majority", 1, 1), ("2", 5, 2)])
def test_need(rule: str, n: int, wanted: int) -> None:
    assert need(rule, n) == wanted


def test_decide_waits_until_the_quorum_is_settled_either_way() -> None:
    regions = ("a", "b", "c")
    assert decide("majority", regions, {"a": True}) is None
    assert decide("majority", regions, {"a": True, "b": True}) is True
    assert decide("majority", regions, {"a": False, "b": False}) is False
    assert decide("all", regions, {"a": False}) is False            # one failure settles "all"
    assert decide("any", regions, {"a": False, "b": False}) is None  # c may still be ok
    assert decide("any", regions, {"a": False, "b": False, "c": False}) is False
    assert decide("any", regions, {"c": True}) is True


def test_placement_input_is_validated_with_the_key_named() -> None:
    assert parse_placement(None, None) == {}
    assert parse_placement("EU-West, us-east,eu-west", "ANY") == {"regions": ["eu-west", "us-east"], "quorum": "any"}
    assert parse_placement(["a", "b"], 2) == {"regions": ["a", "b"], "quorum": "2"}
    assert parse_placement("all", None) == {"regions": "all"}
    for regions, quorum, words in [("bad name", None, "regions"), ("a", "most", "quorum"), ("a,b", "3", "cannot agree"),
                                   (None, "any", "needs --regions"), (7, None, "regions"), ("a", True, "quorum")]:
        with pytest.raises(OptionError) as err:
            parse_placement(regions, quorum, where="urls.csv:3")
        assert words in str(err.value) and "urls.csv:3" in str(err.value)
    assert resolve({"regions": "all"}, {"b", "a"}, immediate=False) == {"regions": ["a", "b"]}
    with pytest.raises(ConfigError, match="cannot be met"):
        resolve({"regions": "all", "quorum": "3"}, {"a"}, immediate=False)
    with pytest.raises(ConfigError, match="embedded"):
        resolve({"regions": ["eu"]}, (), immediate=True)
    assert queue_for("urltester", "default") == "urltester"
    assert queue_for("urltester", "eu-west") == "urltester@eu-west"


def test_one_result_per_job_and_region_and_the_deciding_one_is_the_jobs(store: Store) -> None:
    b = store.create_batch("b")
    plain, three = store.insert_jobs(b.id, [NewJob("http://x.test/"),
                                            NewJob("http://y.test/",
                                                   {"regions": ["a", "b", "c"], "quorum": "majority"})])
    assert store.store_results([result(plain, "default"), result(three, "a")]) == 2
    assert store.store_results([result(three, "a", ok=False)]) == 0  # a redelivery never makes a second row
    views = {v.id: v for v in store.list_jobs()}
    assert views[plain].state == "done" and views[three].state != "done"  # one of three is no majority
    assert store.store_results([result(three, "b", ok=False), result(three, "c")]) == 2
    job = store.get_job(three)
    assert job is not None and job.state == "done" and job.ok is True and job.quorum == "majority"
    found = {r.region: r for r in region_results(store, [three])[three]}
    assert {k: v.ok for k, v in found.items()} == {"a": True, "b": False, "c": True}
    assert found["c"].worker == "w-c"


def test_no_worker_is_reported_only_past_the_bound_and_only_for_regions_without_a_worker(store: Store) -> None:
    [job] = store.insert_jobs(None, [NewJob("http://x.test/", {"regions": ["a", "ghost"], "quorum": "all"})])
    now = datetime.now(UTC)
    store.mark_published([job], no_worker_at=now + timedelta(seconds=5))
    assert report_no_worker(store, {"a"}, now=now) == (0, 0)  # not yet past the bound
    assert report_no_worker(store, {"a"}, now=now + timedelta(seconds=6)) == (1, 0)  # ghost only
    found = {r.region: r.outcome for r in region_results(store, [job])[job]}
    assert found == {"ghost": NO_WORKER}
    view = store.get_job(job)
    assert view is not None and view.state == "done" and view.outcome == NO_WORKER  # "all" fails at once
    # Done by its quorum, but region a has not reported: requeue --stale still finds it.
    assert [v.id for v in store.stale_jobs(timedelta(0), now=now + timedelta(seconds=60))] == [job]
    store.store_results([result(job, "a")])  # the live region still reports; nothing is left waiting
    assert waiting_regions(store, now=now + timedelta(seconds=60)) == []
    assert store.stale_jobs(timedelta(0), now=now + timedelta(seconds=60)) == []


def test_the_no_worker_sweep_reads_a_bounded_number_of_pages_and_goes_on_where_it_stopped(store: Store) -> None:
    ids = store.insert_jobs(None, [NewJob(f"http://x{i}.test/", {"regions": ["a", "ghost"]}) for i in range(25)])
    now = datetime.now(UTC)
    store.mark_published(ids, no_worker_at=now)
    later = now + timedelta(seconds=1)
    assert report_no_worker(store, {"a"}, now=later, pages=2, page=10) == (20, ids[19])
    assert report_no_worker(store, {"a"}, now=later, after_id=ids[19], pages=2, page=10) == (5, 0)
    assert report_no_worker(store, {"a"}, now=later, pages=2, page=10) == (0, ids[19])  # a still to report


def _at_version_1(url: str) -> Store:
    s = open_store(url, migrate=False)
    first = (migrations.POSTGRES if s.kind == "postgresql" else migrations.SQLITE)[0]
    with s.dialect.transaction() as cur:
        s._schema_version(cur)
        for statement in first[1]:
            cur.execute(statement)
        cur.execute("INSERT INTO schema_version (version) VALUES (1)")
    return s


def test_migration_4_moves_todays_results_to_the_default_region(request: pytest.FixtureRequest,
                                                                sqlite_url: str) -> None:
    for url in (sqlite_url, request.getfixturevalue("pg_url")):
        s = _at_version_1(url)
        try:
            with s.dialect.transaction() as cur:
                for i in range(1, 201):
                    cur.execute("INSERT INTO jobs (url, state, submitted_at) VALUES (%s, 'done', %s)",
                                (f"http://x{i}.test/", s.dialect.ts(datetime.now(UTC))))
                    cur.execute("INSERT INTO results (job_id, outcome, ok, status_code, attempts, checked_at, worker) "
                                "VALUES (%s, %s, %s, 200, 1, %s, 'old')",
                                (i, "ok" if i % 4 else "http_error",
                                 bool(i % 4) if s.kind == "postgresql" else i % 4 > 0,
                                 s.dialect.ts(datetime.now(UTC))))
            assert 4 in s.migrate()
            found = region_results(s, list(range(1, 201)))
            assert len(found) == 200 and all([r.region for r in rows] == ["default"] for rows in found.values())
            assert sum(1 for rows in found.values() if not rows[0].ok) == 50
            assert s.store_results([result(1, "default", ok=False)]) == 0  # still exactly one per job
            assert s.migrate() == []
        finally:
            s.close()


def test_an_import_line_names_its_own_regions_and_each_goes_to_its_regions_queue(pg_url, amqp_url, queue_name,
                                                                                  tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    f = tmp_path / "urls.jsonl"
    f.write_text("\n".join([
        json.dumps({"url": "http://a.test/"}),
        json.dumps({"url": "http://b.test/", "regions": ["near", "far"], "quorum": "any"}),
        json.dumps({"url": "http://c.test/", "regions": "far"}),
        json.dumps({"url": "http://d.test/", "regions": "near", "quorum": "most"}),
    ]) + "\n")
    try:
        out = run_cli(["import", str(f)], env)
        assert out.returncode == 1 and "urls.jsonl:4: quorum" in out.stderr, out.stderr
        assert queued_calls(amqp_url, queue_name) == [("http://a.test/", {})]
        assert queued_calls(amqp_url, f"{queue_name}@near") == [("http://b.test/", {"region": "near"})]
        assert queued_calls(amqp_url, f"{queue_name}@far") == [("http://b.test/", {"region": "far"}),
                                                               ("http://c.test/", {"region": "far"})]
        rows = [json.loads(line) for line in run_cli(["results", "--format", "json"], env).stdout.splitlines()]
        by_url = {r["url"]: r for r in rows}
        assert by_url["http://b.test/"]["quorum"] == "any"
        assert set(by_url["http://b.test/"]["regions"]) == {"near", "far"}
        assert list(by_url["http://a.test/"]["regions"]) == ["default"]
    finally:
        for region in ("near", "far"):
            delete_queues(amqp_url, f"{queue_name}@{region}")


def queued_calls(amqp_url: str, queue: str) -> list[tuple[str, dict]]:
    """The (url, kwargs) of every check call waiting in a queue (taken off it)."""
    from kombu import Connection

    from runner.taskq.app import decode

    calls = []
    with Connection(amqp_url) as conn:
        ch = conn.channel()
        while (msg := ch.basic_get(queue, no_ack=True)) is not None:
            body = msg.body if isinstance(msg.body, bytes) else msg.body.encode()  # py-amqp decodes utf-8
            calls.extend((c.args[1], c.kwargs) for c in decode(body))
    return calls


def test_embedded_refuses_regions_it_cannot_serve(sqlite_url: str) -> None:
    env = runner_env(sqlite_url, None)
    out = run_cli(["submit", "http://x.test/", "--regions", "eu"], env)
    assert out.returncode == 2 and "RabbitMQ" in out.stderr and "Traceback" not in out.stderr
