"""The import pipeline when a service fails part-way (embedded store, no network)."""

from __future__ import annotations

import io

import pytest

from runner.jobs.importer import Source


def test_database_lost_mid_import_stops_and_says_how_far_it_got(sqlite_url, monkeypatch) -> None:
    import runner.jobs.importer as importer
    from db import StoreUnavailable
    from runner.jobs.runtime import Runtime
    from runner.jobs.settings import from_env

    real = importer.record_jobs
    calls = []

    def failing(store, batch_id, jobs, **kw):
        calls.append(len(jobs))
        if len(calls) > 1:
            raise StoreUnavailable("connection refused")
        return real(store, batch_id, jobs, **kw)

    monkeypatch.setattr(importer, "record_jobs", failing)
    monkeypatch.setattr(importer.Pipeline, "_publish", lambda self, broker, ids, jobs: None)  # no checks run
    rt = Runtime(from_env({}, database_url=sqlite_url))
    data = "".join(f"https://a.test/{i}\n" for i in range(3 * importer.CHUNK)).encode()
    try:
        with pytest.raises(StoreUnavailable) as caught:
            importer.Importer(rt, idempotency_key="k").run(Source("x.txt", io.BytesIO(data)))
        assert caught.value.report.recorded == importer.CHUNK
        assert rt.store.create_batch("again", "k").size == importer.CHUNK  # a re-run skips these
    finally:
        rt.close()
