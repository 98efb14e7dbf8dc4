"""The import pipeline when a service fails part-way (embedded store, no network)."""

from __future__ import annotations

import io

import pytest

from runner.jobs.importer import Source


def test_database_lost_mid_import_stops_and_says_how_far_it_got(sqlite_url, monkeypatch) -> None:
    import runner.jobs.importer as importer
    from db import StoreUnavailable
    from runner.jobs.intake import CHUNK, FIRST_CHUNK, Intake
    from runner.jobs.runtime import Runtime
    from runner.jobs.settings import from_env

    monkeypatch.setattr(Intake, "_publish", lambda self, ids, jobs: None)  # no checks run
    rt = Runtime(from_env({}, database_url=sqlite_url))
    real = rt.store.insert_jobs
    calls = []

    def failing(batch_id, jobs, **kw):
        calls.append(len(jobs))
        if len(calls) > 1:
            raise StoreUnavailable("connection refused")
        return real(batch_id, jobs, **kw)

    monkeypatch.setattr(rt.store, "insert_jobs", failing)
    data = "".join(f"https://a.test/{i}\n" for i in range(3 * CHUNK)).encode()
    try:
        with pytest.raises(StoreUnavailable) as caught:
            importer.Importer(rt, idempotency_key="k").run(Source("x.txt", io.BytesIO(data)))
        assert caught.value.report.recorded == FIRST_CHUNK
        assert rt.store.create_batch("again", "k").size == FIRST_CHUNK  # a re-run skips these
    finally:
        rt.close()
