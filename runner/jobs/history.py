"""URLs as users see them: one row per URL, one URL's story, and what changed between two
runs (``runner urls``, ``runner history``, ``runner changes``; the API's later pages use
the same shapes). The store reads (db/urls.py); this module compares and shapes.

The JSON keys are a contract (issue 21, docs/history.md): add keys, never rename them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from xml.sax.saxutils import quoteattr

from db import Change
from db.store import Store
from db.urls import (
    Check,
    Diff,
    Point,
    UrlView,
    batch_checks,
    checks_before,
    checks_since,
    find_batch,
    first_job,
    url_texts,
    urls_with_jobs_between,
)
from runner.errors import InvalidInput
from runner.jobs.report import iso
from runner.text import json_safe, mask_url, printable

CHANGE_KINDS = ("new_failure", "recovered", "still_failing", "new", "gone", "slower", "changed")
SLOWER_MIN_MS = 100.0  # slower: at least --slower times the earlier time, and this much more


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def parse_window(text: str, *, now: datetime | None = None) -> datetime:
    """The start of a window given as an age (``24h``, ``7d``, ``30d``); ValueError naming the text."""
    from datetime import UTC, timedelta

    from runner.jobs.when import parse_age

    age = parse_age(text)
    if age is None or age <= timedelta(0):
        raise ValueError(f"{text!r} is not an age such as 24h, 7d or 30d")
    return (now or datetime.now(UTC)) - age


def parse_slower(text: str) -> float:
    """``--slower``'s factor (``2x``, ``1.5``, at least 1); ValueError naming the text."""
    raw = text.strip().lower().removesuffix("x")
    try:
        factor = float(raw)
    except ValueError:
        factor = 0.0
    if not factor >= 1.0 or factor != factor or factor == float("inf"):
        raise ValueError(f"{text!r} is not a factor such as 2x or 1.5x (at least 1)")
    return factor


# ---------------------------------------------------------------------------- comparing


def classify(before: Check | None, after: Check | None, *, slower: float = 2.0) -> str | None:
    """What changed between a URL's two checks; None when ok both times and unchanged."""
    if before is None:
        return "new"
    if after is None:
        return "gone"
    if before.ok and not after.ok:
        return "new_failure"
    if not before.ok and after.ok:
        return "recovered"
    if not before.ok:
        return "still_failing"
    if (before.total_ms is not None and after.total_ms is not None
            and after.total_ms >= slower * before.total_ms and after.total_ms - before.total_ms >= SLOWER_MIN_MS):
        return "slower"
    if (before.status_code, before.final_url, before.cert) != (after.status_code, after.final_url, after.cert):
        return "changed"
    return None


@dataclass(frozen=True)
class Comparison:
    diffs: list[Diff]

    @property
    def new_failures(self) -> int:
        return sum(1 for d in self.diffs if d.change == "new_failure")


def compare(store: Store, *, batch: str | None = None, against: str | None = None, since: datetime | None = None,
            slower: float = 2.0) -> Comparison:
    """With ``batch`` alone: each URL of the batch against its check just before it, and
    URLs of the previous batch of the same name missing from it (gone). With ``against``:
    against its check in that batch. With ``since``: each URL checked since then against
    its check before then. An unknown batch is InvalidInput naming it."""
    if batch is None:
        if since is None:
            raise InvalidInput("give --since AGE or --batch B")
        after = checks_since(store, since)
        return _diffs(store, checks_before(store, list(after), before=since), after, {}, slower)
    batch_id = find_batch(store, batch)
    if batch_id is None:
        raise InvalidInput(f"no batch {batch!r}", where="--batch")
    against_id = None
    if against is not None:
        against_id = find_batch(store, against)
        if against_id is None:
            raise InvalidInput(f"no batch {against!r}", where="--against")
    return compare_batch(store, batch_id, against_id, slower=slower)


def compare_batch(store: Store, batch_id: int, against_id: int | None = None, *, slower: float = 2.0) -> Comparison:
    """:func:`compare` of batches known by id (``--fail-on new`` asks it of its own batch)."""
    after = batch_checks(store, batch_id)
    if against_id is not None:
        before = batch_checks(store, against_id)
        gone = {u: c for u, c in before.items() if u not in after}
    else:
        first = first_job(store, batch_id)
        previous = find_batch(store, _name(store, batch_id), before=batch_id)
        earlier = batch_checks(store, previous) if previous else {}
        gone = {u: c for u, c in earlier.items() if u not in after}
        before = _checks_before_batch(store, after, earlier, first, previous) if first is not None else {}
    return _diffs(store, before, after, gone, slower)


def _checks_before_batch(store: Store, after: dict[int, Check], earlier: dict[int, Check], first: int,
                         previous: int | None) -> dict[int, Check]:
    """Each URL's check just before the batch whose first job is ``first``. For a nightly
    batch that is, for most URLs, their check in the previous batch of its name
    (``earlier``): taken from there unless some other job of the URL lies between it and
    the batch; the other URLs walk back through their jobs (checks_before), one index
    walk per URL, the cost this saves."""
    known = {u: c for u, c in earlier.items() if u in after and c.job_id < first}
    if known:
        between = urls_with_jobs_between(store, min(c.job_id for c in known.values()), first, except_batch=previous)
        known = {u: c for u, c in known.items() if u not in between}
    rest = [u for u in after if u not in known]
    return {**known, **(checks_before(store, rest, below_job=first) if rest else {})}


def _diffs(store: Store, before: dict[int, Check], after: dict[int, Check], gone: dict[int, Check],
           slower: float) -> Comparison:
    found: list[tuple[int, str, Check | None, Check | None]] = []
    for url_id, check in after.items():
        earlier = before.get(url_id)
        change = classify(earlier, check, slower=slower)
        if change is not None:
            found.append((url_id, change, earlier, check))
    found.extend((u, "gone", c, None) for u, c in gone.items())
    texts = url_texts(store, [f[0] for f in found])  # of the URLs listed only: most are unchanged
    diffs = [Diff(texts[url_id], change, b, a, url_id) for url_id, change, b, a in found]
    diffs.sort(key=lambda d: (CHANGE_KINDS.index(d.change), d.url))
    return Comparison(diffs)


def _name(store: Store, batch_id: int) -> str:
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT name FROM batches WHERE id = %s", (batch_id,))
        return str(cur.fetchone()[0])


# ---------------------------------------------------------------------------- shapes


def check_object(check: Check | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {"job_id": check.job_id, "outcome": check.outcome, "status_code": check.status_code,
            "total_ms": _ms(check.total_ms), "final_url": mask_url(check.final_url) if check.final_url else None,
            "checked_at": iso(check.checked_at)}


def diff_object(diff: Diff) -> dict[str, Any]:
    return {"url": mask_url(diff.url), "change": diff.change, "before": check_object(diff.before),
            "after": check_object(diff.after), "url_id": diff.url_id}


def url_object(view: UrlView) -> dict[str, Any]:
    last = None
    if view.last_job_id is not None:
        last = {"job_id": view.last_job_id, "outcome": view.last_outcome, "status_code": view.last_status_code,
                "total_ms": _ms(view.last_total_ms), "error": view.last_error, "title": view.last_title}
    return {
        "url": mask_url(view.url), "state": view.state, "since": iso(view.since),
        "last_checked_at": iso(view.last_checked_at), "last": last,
        "checks": view.window.checks, "ok": view.window.ok,
        "uptime": None if view.uptime is None else round(view.uptime, 6),
        "latency_ms": {k: _ms(view.latency(q)) for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
        "id": view.id,
    }


def change_object(change: Change) -> dict[str, Any]:
    return {"at": iso(change.at), "from": change.from_state, "to": change.to_state, "outcome": change.outcome,
            "status_code": change.status_code, "error": change.error, "job_id": change.job_id}


def change_event_object(change: Change) -> dict[str, Any]:
    """A change as ``/api/v1/events`` sends it (``event: change``): the URL and the kind of
    change, then :func:`change_object`'s keys."""
    return {"url": mask_url(change.url), "change": change.change, **change_object(change)}


def change_counts(diffs: Sequence[Diff]) -> dict[str, int]:
    """How many of each change kind (every kind named)."""
    return {k: sum(1 for d in diffs if d.change == k) for k in CHANGE_KINDS}


def point_object(point: Point) -> dict[str, Any]:
    return {"job_id": point.job_id, "batch": point.batch, "checked_at": iso(point.checked_at),
            "outcome": point.outcome, "status_code": point.status_code, "total_ms": _ms(point.total_ms),
            "error": point.error, "region": point.region}


def history_object(view: UrlView, changes: Sequence[Change], recent: Sequence[Point]) -> dict[str, Any]:
    return {**url_object(view), "changes": [change_object(c) for c in changes],
            "recent": [point_object(p) for p in recent]}


def dumps(obj: Any) -> str:
    return json_safe(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


# ---------------------------------------------------------------------------- tables and files

_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None]) -> str:
    """Latencies as bars, oldest first (a gap for a check without a time)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    return "".join(" " if v is None else _SPARK[min(7, int((v - low) / span * 7.999))] for v in values)


def strip(points: Sequence[Point]) -> str:
    """Outcomes as marks, oldest first: ✓ ok, ✗ failed."""
    return "".join("✓" if p.ok else "✗" for p in points)


def _cell(value: Any, width: int | None = None) -> str:
    text = "-" if value is None else printable(value)
    return text if width is None else text[:width].ljust(width)


def url_table(views: Iterable[UrlView]) -> Iterator[str]:
    yield f"{'STATE':<8} {'SINCE':<24} {'LAST':<17} {'CODE':>4} {'MS':>8} {'UPTIME':>7} {'P95':>8}  URL"
    for v in views:
        uptime = "-" if v.uptime is None else f"{v.uptime * 100:.1f}%"
        p95 = v.latency(0.95)
        yield (f"{v.state:<8} {_cell(iso(v.since), 24)} {_cell(v.last_outcome, 17)} {_cell(v.last_status_code):>4} "
               f"{_cell(_ms(v.last_total_ms)):>8} {uptime:>7} {_cell(_ms(p95)):>8}  {printable(mask_url(v.url))}")


def history_table(view: UrlView, changes: Sequence[Change], recent: Sequence[Point]) -> Iterator[str]:
    obj = url_object(view)
    lat = obj["latency_ms"]
    uptime = "-" if view.uptime is None else f"{view.uptime * 100:.2f}%"
    yield printable(mask_url(view.url))
    yield f"  state     {view.state} since {iso(view.since) or '-'}"
    yield (f"  last      {_cell(view.last_outcome)} {_cell(view.last_status_code)} {_cell(_ms(view.last_total_ms))} ms "
           f"at {iso(view.last_checked_at) or '-'}")
    checks = f"{view.window.checks} check{'' if view.window.checks == 1 else 's'}"
    yield (f"  window    {checks}, {view.window.ok} ok, uptime {uptime}, "
           f"p50 {_cell(lat['p50'])} p95 {_cell(lat['p95'])} p99 {_cell(lat['p99'])} ms")
    oldest_first = list(reversed(recent))
    yield f"  latency   {sparkline([p.total_ms for p in oldest_first])}"
    yield f"  outcomes  {strip(oldest_first)}"
    yield "  changes"
    for c in changes:
        yield (f"    {iso(c.at)}  {c.from_state or '-'} -> {c.to_state}  {c.change}  {_cell(c.outcome)} "
               f"{_cell(c.status_code)}  job {c.job_id}  {_cell(c.error)}")
    yield "  recent"
    for p in recent:
        yield (f"    {iso(p.checked_at)}  {_cell(p.outcome, 17)} {_cell(p.status_code):>4} "
               f"{_cell(_ms(p.total_ms)):>8} ms"
               f"  job {p.job_id}  {_cell(p.batch)}  {_cell(p.region)}  {_cell(p.error)}")


def write_urls_csv(views: Iterable[UrlView], out: TextIO) -> None:
    w = csv.writer(out)
    w.writerow(["url", "state", "since", "last_checked_at", "last_job_id", "last_outcome", "last_status_code",
                "last_total_ms", "last_error", "checks", "ok", "uptime", "p50_ms", "p95_ms", "p99_ms"])
    for v in views:
        o = url_object(v)
        last = o["last"] or {}
        w.writerow([printable(c) if isinstance(c, str) else ("" if c is None else c) for c in (
            o["url"], o["state"], o["since"], o["last_checked_at"], last.get("job_id"), last.get("outcome"),
            last.get("status_code"), last.get("total_ms"), last.get("error"), o["checks"], o["ok"], o["uptime"],
            o["latency_ms"]["p50"], o["latency_ms"]["p95"], o["latency_ms"]["p99"])])


def changes_table(diffs: Sequence[Diff]) -> Iterator[str]:
    yield f"{'CHANGE':<14} {'BEFORE':<22} {'AFTER':<22}  URL"
    for d in diffs:
        yield f"{d.change:<14} {_side(d.before):<22} {_side(d.after):<22}  {printable(mask_url(d.url))}"
    counts = change_counts(diffs)
    yield ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no changes"


def _side(check: Check | None) -> str:
    if check is None:
        return "-"
    code = "" if check.status_code is None else f" {check.status_code}"
    ms = "" if check.total_ms is None else f" {check.total_ms:.0f}ms"
    return f"{check.outcome}{code}{ms}"


def write_changes_csv(diffs: Sequence[Diff], out: TextIO) -> None:
    w = csv.writer(out)
    sides = ("job_id", "outcome", "status_code", "total_ms", "final_url", "checked_at")
    w.writerow(["url", "change", *(f"before_{k}" for k in sides), *(f"after_{k}" for k in sides)])
    for d in diffs:
        o = diff_object(d)
        cells = [o["url"], o["change"], *((o["before"] or {}).get(k) for k in sides),
                 *((o["after"] or {}).get(k) for k in sides)]
        w.writerow([printable(c) if isinstance(c, str) else ("" if c is None else c) for c in cells])


def write_changes_junit(diffs: Sequence[Diff], out: TextIO, *, name: str) -> None:
    """One test case per URL listed; a new or continued failure is a failure."""
    failing = [d for d in diffs if d.change in ("new_failure", "still_failing")]
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write(f"<testsuite name={quoteattr(printable(name))} tests=\"{len(diffs)}\" failures=\"{len(failing)}\">\n")
    for d in diffs:
        out.write(f"  <testcase classname={quoteattr(d.change)} name={quoteattr(printable(mask_url(d.url)))}")
        if d.change in ("new_failure", "still_failing") and d.after is not None:
            out.write(f"><failure message={quoteattr(d.change)} type={quoteattr(d.after.outcome)}/></testcase>\n")
        else:
            out.write("/>\n")
    out.write("</testsuite>\n")
