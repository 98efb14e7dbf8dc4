"""Reads for regions: each job's per-region results, and the jobs whose regions may have
no worker. (Writes go through :meth:`db.Store.store_results`, which decides the quorum.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from runner.fields import RESULT_KEYS

from .models import ResultRecord
from .regions import Placement
from .store import Store, utcnow


def region_results(store: Store, job_ids: Sequence[int], *, detail: bool = False) -> dict[int, list[ResultRecord]]:
    """Each job's region results, by region name; jobs without any are left out.

    A job that named regions has its rows in ``region_results``; one that named none has
    its single result in ``results`` (region: the default one), read from there.
    """
    if not job_ids:
        return {}
    out: dict[int, list[ResultRecord]] = {}
    for start in range(0, len(job_ids), 1000):
        part = list(job_ids[start:start + 1000])
        out.update(_read(store, "region_results", part, detail))
        rest = [j for j in part if j not in out]
        if rest:
            out.update(_read(store, "results", rest, detail))
    return out


_COLUMNS = ", ".join(("job_id", "region", "worker", "checked_at", *RESULT_KEYS))


def _read(store: Store, table: str, job_ids: list[int], detail: bool) -> dict[int, list[ResultRecord]]:
    d = store.dialect
    test, params = d.any_of("job_id", job_ids)
    with d.transaction(write=False) as cur:
        cur.execute(f"SELECT {_COLUMNS}{', detail' if detail else ''} FROM {table} "  # our own names
                    f"WHERE {test} ORDER BY job_id, region", params)
        rows = cur.fetchall()
    out: dict[int, list[ResultRecord]] = {}
    for r in rows:
        found = dict(zip(RESULT_KEYS, r[4:], strict=False))  # a trailing detail is not a result field
        found["ok"] = bool(found["ok"])
        out.setdefault(r[0], []).append(ResultRecord(
            job_id=r[0], region=r[1], worker=r[2], checked_at=d.parse_ts(r[3]), **found,
            detail=(d.parse_json(r[-1]) or {}) if detail else {}))
    return out


def waiting_regions(store: Store, *, now: datetime | None = None, limit: int = 1000,
                    after_id: int = 0) -> list[tuple[int, tuple[str, ...]]]:
    """Jobs past their no-worker bound, each with the regions it has not heard from yet:
    ``(job_id, regions)``, in id order. The caller reports those without a live worker."""
    d = store.dialect
    with d.transaction(write=False) as cur:
        cur.execute(
            "SELECT id, options FROM jobs WHERE no_worker_at IS NOT NULL AND no_worker_at < %s AND id > %s "
            "ORDER BY id LIMIT %s",
            (d.ts(now or utcnow()), after_id, limit),
        )
        jobs = [(row[0], d.parse_json(row[1]) or {}) for row in cur.fetchall()]
        if not jobs:
            return []
        test, params = d.any_of("job_id", [j for j, _ in jobs])
        cur.execute(f"SELECT job_id, region FROM region_results WHERE {test}", params)
        heard: dict[int, set[str]] = {}
        for job_id, region in cur.fetchall():
            heard.setdefault(job_id, set()).add(region)
    out: list[tuple[int, tuple[str, ...]]] = []
    for job_id, options in jobs:
        missing = tuple(r for r in Placement.of(options).regions if r not in heard.get(job_id, set()))
        out.append((job_id, missing))
    return out


def region_counts(store: Store, job_ids: Sequence[int]) -> dict[int, dict[str, bool]]:
    """``{job_id: {region: ok}}`` for the TUI's region column (no detail, no timings)."""
    return {job: {r.region: r.ok for r in rows} for job, rows in region_results(store, job_ids).items()}


__all__: list[Any] = ["region_counts", "region_results", "waiting_regions"]
