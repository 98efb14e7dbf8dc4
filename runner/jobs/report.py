"""Results out: the stable JSON Lines schema, CSV and the terminal table.

The JSON keys are a contract read by scripts: add keys, never rename or remove them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TextIO
from xml.sax.saxutils import escape, quoteattr

from db import JobView
from runner.text import mask_url, printable

CORE_KEYS = (
    "id", "url", "batch", "state", "outcome", "ok", "status_code", "total_ms", "attempts", "error",
    "final_url", "bytes", "content_type", "title", "submitted_at", "started_at", "checked_at",
)
FORMATS = ("table", "json", "csv", "junit")


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


def json_line(view: JobView) -> str:
    """One job as a line of JSON Lines (the ``runner results --format json`` format)."""
    return json.dumps(to_row(view), ensure_ascii=False, default=str) + "\n"


def write_json(views: Iterable[JobView], out: TextIO) -> int:
    n = 0
    for view in views:
        out.write(json_line(view))
        n += 1
    return n


def csv_chunks(views: Iterable[JobView], rows: int = 500) -> Iterator[str]:
    """CSV text (header first) a few hundred rows at a time: for streaming answers."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CORE_KEYS)
    n = 0
    for view in views:
        row = to_row(view)
        writer.writerow(["" if row[k] is None else _csv_value(row[k]) for k in CORE_KEYS])
        n += 1
        if n % rows == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def write_csv(views: Iterable[JobView], out: TextIO) -> int:
    n = 0

    def counted() -> Iterator[JobView]:
        nonlocal n
        for view in views:
            n += 1
            yield view

    for chunk in csv_chunks(counted()):
        out.write(chunk)
    return n


def _csv_value(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# XML 1.0 allows tab, newline, carriage return and most other code points; anything else
# (other C0 controls, surrogates, U+FFFE/U+FFFF) would make the report unreadable.
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: object) -> str:
    text = _XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if value is None else str(value))
    return escape(text)


def _xml_attr(value: object) -> str:
    text = _XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", "" if value is None else str(value))
    return quoteattr(text.replace("\n", " ").replace("\r", " ").replace("\t", " "))


def write_junit(views: Iterable[JobView], out: TextIO, *, name: str = "urltester",
                tests: int | None = None, failures: int | None = None, skipped: int | None = None) -> int:
    """JUnit XML, one ``<testcase>`` per job, written as the rows arrive (flat memory).

    A check that failed is a ``<failure>`` (type: the outcome; message: outcome and
    error); a job not checked yet is ``<skipped>``. The suite's counts come first in the
    XML, so a caller that streams passes them in (counted beforehand); otherwise they
    are left out, which CI readers accept. Rows are grouped by batch in ``classname``.
    """
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
    counts = "".join(
        f" {key}={_xml_attr(value)}" for key, value in (("tests", tests), ("failures", failures), ("skipped", skipped))
        if value is not None
    )
    out.write(f"  <testsuite name={_xml_attr(name)}{counts}>\n")
    n = 0
    for view in views:
        n += 1
        row = to_row(view)
        seconds = "" if view.total_ms is None else f" time=\"{view.total_ms / 1000:.3f}\""
        classname = f"urltester.{view.batch}" if view.batch else "urltester"
        out.write(f"    <testcase classname={_xml_attr(classname)} name={_xml_attr(row['url'])}{seconds}>")
        if view.state != "done":
            out.write(f"<skipped message={_xml_attr(view.state)}/>")
        elif not view.ok:
            outcome = view.outcome or "failed"
            message = f"{outcome}: {view.error}" if view.error else outcome
            details = [f"outcome: {outcome}", f"status_code: {view.status_code or ''}",
                       f"error: {view.error or ''}", f"final_url: {row['final_url'] or ''}",
                       f"attempts: {view.attempts or ''}", f"job id: {view.id}"]
            out.write(f"<failure type={_xml_attr(outcome)} message={_xml_attr(message)}>"
                      f"{_xml_text(chr(10).join(details))}</failure>")
        else:
            summary = f"status {view.status_code}, {row['total_ms']} ms"
            out.write(f"<system-out>{_xml_text(summary)}</system-out>")
        out.write("</testcase>\n")
    out.write("  </testsuite>\n</testsuites>\n")
    return n


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
