"""Results out: the stable JSON Lines schema, CSV and the terminal table.

The JSON keys are a contract read by scripts: add keys, never rename or remove them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from db import JobView

from .text import printable
from .urls import mask_url

CORE_KEYS = (
    "id", "url", "batch", "state", "outcome", "ok", "status_code", "total_ms", "attempts", "error",
    "final_url", "bytes", "content_type", "title", "submitted_at", "started_at", "checked_at",
)
FORMATS = ("table", "json", "csv")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, e.g. ``2026-11-27T20:49:13.123Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_row(view: JobView) -> dict[str, Any]:
    """One job as the stable JSON object (core keys first, then the check's details)."""
    core: dict[str, Any] = {
        "id": view.id,
        "url": mask_url(view.url),
        "batch": view.batch,
        "state": view.state,
        "outcome": view.outcome,
        "ok": view.ok,
        "status_code": view.status_code,
        "total_ms": None if view.total_ms is None else round(view.total_ms, 1),
        "attempts": view.attempts,
        "error": view.error,
        "final_url": mask_url(view.final_url) if view.final_url else None,
        "bytes": view.bytes,
        "content_type": view.content_type,
        "title": view.title,
        "submitted_at": iso(view.submitted_at),
        "started_at": iso(view.started_at),
        "checked_at": iso(view.checked_at),
    }
    if view.publish_error and view.state == "queued":
        core["publish_error"] = view.publish_error
    extra = {k: v for k, v in (view.detail or {}).items() if k not in core}
    return {**core, **extra}


def write_json(views: Iterable[JobView], out: TextIO) -> int:
    n = 0
    for view in views:
        out.write(json.dumps(to_row(view), ensure_ascii=False, default=str) + "\n")
        n += 1
    return n


def write_csv(views: Iterable[JobView], out: TextIO) -> int:
    writer = csv.writer(out)
    writer.writerow(CORE_KEYS)
    n = 0
    for view in views:
        row = to_row(view)
        writer.writerow(["" if row[k] is None else _csv_value(row[k]) for k in CORE_KEYS])
        n += 1
    return n


def _csv_value(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


SYMBOLS = {"ok": "✓", "queued": "·", "running": "…"}


def state_label(view: JobView) -> str:
    """State or outcome in words with a symbol, never colour alone."""
    if view.state != "done":
        return f"{SYMBOLS[view.state]} {view.state}" if view.state in SYMBOLS else view.state
    if view.ok:
        return "✓ ok"
    return f"✗ {view.outcome or 'failed'}"


def table_lines(views: Iterable[JobView], width: int = 120) -> Iterator[str]:
    header = f"{'ID':>8}  {'STATE':<20} {'CODE':>4} {'MS':>8}  URL / ERROR"
    yield header
    url_width = max(20, width - len(header) + len("URL / ERROR"))
    for v in views:
        ms = "" if v.total_ms is None else f"{v.total_ms:.0f}"
        code = "" if v.status_code is None else str(v.status_code)
        line = f"{v.id:>8}  {state_label(v):<20} {code:>4} {ms:>8}  {printable(mask_url(v.url), url_width)}"
        yield line
        if v.error and not v.ok:
            yield f"{'':>8}  {'':<20} {'':>4} {'':>8}    {printable(v.error, url_width)}"
