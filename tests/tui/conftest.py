"""Fixtures for the TUI's tests: a runtime on SQLite in tmp_path, deterministic data, waiting.

Data for snapshots is written straight through the store with fixed times, and the app
gets a fixed clock and UTC, so nothing on screen depends on when the test runs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from db import NewJob, ResultRecord, Store, open_store
from runner.jobs.runtime import Runtime
from runner.jobs.settings import Settings
from runner.taskq.memory import MemoryBroker

FIXED_NOW = datetime(2026, 3, 14, 12, 0, 0, tzinfo=UTC)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop (Textual's Pilot is async)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
        return True
    return None


def fixed_clock() -> datetime:
    return FIXED_NOW


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """The embedded default (checks in-process) on a SQLite file of this test's own."""
    rt = Runtime(Settings(database_url=f"sqlite:///{tmp_path}/t.db"), broker=MemoryBroker(workers=4))
    yield rt
    rt.close()


@pytest.fixture
def shown_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose settings show a fixed database path (for snapshots) but use tmp_path."""
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    rt = Runtime(Settings(database_url="sqlite:///home/ops/.local/share/urltester/urltester.db"), store=store)
    yield rt
    rt.close()


def detail(total: float, *, tls: bool = True, redirects: int = 0, error: str | None = None) -> dict[str, Any]:
    """A check result's details as the check stores them (timings per hop, TLS, headers)."""
    hops = []
    for n in range(redirects + 1):
        hops.append({"url": f"https://shop.example/{'old' * (redirects - n)}", "status": 301 if n < redirects else 200,
                     "ip": "192.0.2.10", "reused": n > 0, "dns_ms": 12.5 if n == 0 else 0,
                     "connect_ms": 20.25 if n == 0 else 0,
                     "tls_ms": 41.0 if (tls and n == 0) else 0, "ttfb_ms": 60.0, "transfer_ms": 4.0,
                     "total_ms": total / (redirects + 1)})
    return {
        "url": "https://shop.example/old" if redirects else "https://shop.example/",
        "method": "GET", "reason": "OK" if not error else "Service Unavailable", "http_version": "HTTP/1.1",
        "headers": {"content-type": "text/html; charset=utf-8", "server": "nginx", "x-note": "[bold]not markup[/bold]"},
        "redirects": [{"status": 301, "url": "https://shop.example/"}] * redirects,
        "ip": "192.0.2.10", "hops": hops,
        "tls": {"protocol": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384", "alpn": "http/1.1", "verified": True,
                "subject": "CN=shop.example", "issuer": "CN=Example CA", "san": ["shop.example", "www.shop.example"],
                "not_before": "2026-01-01T00:00:00Z", "not_after": "2026-06-01T00:00:00Z", "days_left": 79,
                "chain": [{"subject": "CN=shop.example", "issuer": "CN=Example CA",
                           "not_after": "2026-06-01T00:00:00Z"}]}
        if tls else None,
        "error": error, "retried": [], "failed_conditions": [],
    }


# (url, outcome, ok, status, total_ms, bytes, title, error, attempts)
SAMPLE = [
    ("https://shop.example/", "ok", True, 200, 137.75, 51234, "Shop — home", None, 1),
    ("https://api.example/health", "ok", True, 204, 42.0, 0, None, None, 1),
    ("https://old.example/", "http_error", False, 503, 880.0, 120, None,
     "HTTP 503 Service Unavailable (expected 200-399)", 3),
    ("https://nowhere.invalid/", "dns_error", False, None, None, None, None, "DNS: name not found (nowhere.invalid)",
     1),
    ("http://10.0.0.9:8080/x", "connect_refused", False, None, None, None, None, "connection refused by 10.0.0.9:8080",
     1),
    ("https://x.test/[/b]", "ok", True, 200, 95.5, 2048, "[link=https://evil.example]click[/link] \x1b[31mred", None,
     1),
    ("https://slow.example/report?q=[red]x[/red]", "read_timeout", False, None, 10003.0, None, None,
     "no response within 10 s", 2),
    ("https://docs.example/guide/intro", "ok", True, 200, 210.0, 734003, "Guide: introduction", None, 1),
]


def seed(store: Store, *, queued: int = 2, batch: str = "nightly 2026-03-14", base: datetime = FIXED_NOW,
         sample: list[tuple[Any, ...]] | None = None) -> list[int]:
    """Jobs with results at fixed times (oldest first), then ``queued`` jobs without one."""
    sample = SAMPLE if sample is None else sample
    b = store.create_batch(batch, now=base - timedelta(minutes=30))
    jobs = [NewJob(row[0], {}) for row in sample] + [NewJob(f"https://queue.example/{n}", {}) for n in range(queued)]
    ids = store.insert_jobs(b.id, jobs, now=base - timedelta(minutes=20))
    records = []
    for n, (job_id, row) in enumerate(zip(ids, sample, strict=False)):
        url, outcome, ok, status, total, size, title, error, attempts = row
        records.append(ResultRecord(
            job_id=job_id, outcome=outcome, ok=ok, status_code=status, total_ms=total, attempts=attempts, error=error,
            final_url=url, bytes=size, content_type="text/html" if size else None, title=title,
            checked_at=base - timedelta(minutes=10) + timedelta(seconds=7 * n),
            detail=detail(total or 0, tls=url.startswith("https"), redirects=1 if n == 0 else 0, error=error),
        ))
    store.store_results(records)
    return ids


def seed_result(store: Store, job_id: int, *, ok: bool = True) -> None:
    store.store_results([ResultRecord(
        job_id=job_id, outcome="ok" if ok else "http_error", ok=ok, status_code=200 if ok else 500, total_ms=88.0,
        attempts=1, error=None if ok else "HTTP 500", final_url=None, bytes=10, content_type="text/html", title="t",
        checked_at=FIXED_NOW, detail=detail(88.0))])


def fill(store: Store, n: int, *, ok_every: int = 3) -> list[int]:
    """``n`` done jobs quickly (for paging tests)."""
    b = store.create_batch("bulk", now=FIXED_NOW)
    ids = store.insert_jobs(b.id, [NewJob(f"https://bulk.example/{i}", {}) for i in range(n)], now=FIXED_NOW)
    store.store_results([
        ResultRecord(job_id=i, outcome="ok" if k % ok_every else "http_error", ok=bool(k % ok_every),
                     status_code=200 if k % ok_every else 500, total_ms=float(k % 997), attempts=1, error=None,
                     final_url=None, bytes=100, content_type=None, title=None,
                     checked_at=FIXED_NOW - timedelta(seconds=n - k))
        for k, i in enumerate(ids)
    ])
    return ids


async def wait_for(pilot: Any, predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app run until ``predicate()`` holds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def screen_text(app: Any) -> str:
    """The characters on screen, line by line (what an operator reads)."""
    from textual.strip import Strip  # noqa: F401 - the compositor renders strips

    lines = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip) for strip in lines)


__all__ = ["FIXED_NOW", "SAMPLE", "asyncio", "detail", "fill", "fixed_clock", "screen_text", "seed", "wait_for"]
