"""Reads for regions: each job's per-region results, and the jobs whose regions may have
no worker. (Writes go through :meth:`db.Store.store_results`, which decides the quorum.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .models import RegionResult
from .regions import Placement
from .store import Store, utcnow


def region_results(store: Store, job_ids: Sequence[int], *, detail: bool = False) -> dict[int, list[RegionResult]]:
    """Each job's region results, by region name; jobs without any are left out.

    A job that named regions has its rows in ``region_results``; one that named none has
    its single result in ``results`` (region: the default one), read from there.
    """
    if not job_ids:
        return {}
    out: dict[int, list[RegionResult]] = {}
    for start in range(0, len(job_ids), 1000):
        part = list(job_ids[start:start + 1000])
        out.update(_read(store, "region_results", part, detail))
        rest = [j for j in part if j not in out]
        if rest:
            out.update(_read(store, "results", rest, detail))
    return out


def _read(store: Store, table: str, job_ids: list[int], detail: bool) -> dict[int, list[RegionResult]]:
    d = store.dialect
    test, params = d.any_of("job_id", job_ids)
    columns = "job_id, region, outcome, ok, status_code, total_ms, attempts, error, worker, checked_at"
    with d.transaction(write=False) as cur:
        cur.execute(f"SELECT {columns}{', detail' if detail else ''} FROM {table} "  # noqa: S608 - our own names
                    f"WHERE {test} ORDER BY job_id, region", params)
        rows = cur.fetchall()
    out: dict[int, list[RegionResult]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(RegionResult(
            job_id=r[0], region=r[1], outcome=r[2], ok=bool(r[3]), status_code=r[4], total_ms=r[5],
            attempts=r[6], error=r[7], worker=r[8], checked_at=d.parse_ts(r[9]),
            detail=d.parse_json(r[10]) if detail else None))
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
