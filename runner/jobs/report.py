"""Results out: the stable JSON Lines schema, CSV, JUnit XML and the terminal table.

The JSON keys are a contract read by scripts: add keys, never rename or remove them.

Every format may end up in a terminal, and URLs, titles and errors are strangers' text,
so none writes a control character or bidi override raw: JSON escapes them as
``\\uXXXX`` (the value a parser reads is unchanged), XML as character references (the
same), CSV and the table as visible ``\\x9b``-style escapes (:func:`runner.text.printable`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from db import DEFAULT_REGION, NO_WORKER, JobView, ResultRecord
from runner.check.outcomes import OUTCOMES as CHECK_OUTCOMES
from runner.fields import RESULT_FIELDS, RESULT_KEYS
from runner.text import json_safe, mask_url, printable

# Reads each page's region results (``Runtime.region_results``).
RegionLookup = Callable[[Sequence[int]], dict[int, list[ResultRecord]]]
# Reads each page's crawl referrers (``Runtime.referrers``): job id -> [{"url", "text"}].
ReferrerLookup = Callable[[Sequence[int]], dict[int, list[dict[str, str]]]]

# The JSON keys and CSV columns of a job: its own, then its result's fields (runner.fields),
# then its times. A contract (README): keys are added, never renamed or removed.
CORE_KEYS = ("id", "url", "batch", "state", *RESULT_KEYS, "submitted_at", "started_at", "checked_at")
FORMATS = ("table", "json", "csv", "junit")
REGION_KEYS = (*(f.name for f in RESULT_FIELDS if f.metadata.get("per_region")), "worker", "checked_at")
CSV_REGION_KEYS = ("region", *(f"region_{k}" for k in REGION_KEYS))

OUTCOMES = (*CHECK_OUTCOMES, NO_WORKER)  # what a job's outcome can be: the check's, or a region without a worker


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, e.g. ``2026-11-27T20:49:13.123Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _url(value: str | None) -> str | None:
    return mask_url(value) if value else None


# How a key's value is shown (a result field's by its ``shown`` metadata): key -> converter.
_BY_METADATA: dict[str, Callable[[Any], Any]] = {"ms": _ms, "url": _url}
_SHOWN: dict[str, Callable[[Any], Any]] = {
    "url": mask_url, "submitted_at": iso, "started_at": iso, "checked_at": iso,
    **{f.name: _BY_METADATA[f.metadata["shown"]] for f in RESULT_FIELDS if "shown" in f.metadata},
}
_CORE_SHOWN = tuple((key, _SHOWN.get(key)) for key in CORE_KEYS)
_REGION_SHOWN = tuple((key, _SHOWN.get(key)) for key in REGION_KEYS)


def with_regions(views: Iterable[JobView], lookup: RegionLookup | None,
                 page: int = 500, referrers: ReferrerLookup | None = None,
                 ) -> Iterator[tuple[JobView, list[ResultRecord]]]:
    """Each job with its region results, read a page of jobs at a time (flat memory); with
    ``referrers``, each view's ``referrers`` filled (a crawl's, else empty)."""
    batch: list[JobView] = []

    def flush() -> Iterator[tuple[JobView, list[ResultRecord]]]:
        found = lookup([v.id for v in batch]) if lookup is not None else {}
        linked = referrers([v.id for v in batch]) if referrers is not None and batch else {}
        for view in batch:
            if referrers is not None:
                view.referrers = linked.get(view.id, [])
            yield view, found.get(view.id, [])
        batch.clear()

    for view in views:
        batch.append(view)
        if len(batch) >= page:
            yield from flush()
    yield from flush()


def region_rows(view: JobView, results: Sequence[ResultRecord]) -> dict[str, dict[str, Any]]:
    """Region -> its result for every region the job asked for (all null until heard)."""
    heard = {r.region: r for r in results}
    out: dict[str, dict[str, Any]] = {}
    for region in [*view.regions, *(r for r in heard if r not in view.regions)]:
        r = heard.get(region)
        out[region] = {key: None if r is None else shown(getattr(r, key)) if shown else getattr(r, key)
                       for key, shown in _REGION_SHOWN}
    return out


def to_row(view: JobView, regions: Sequence[ResultRecord] | None = None) -> dict[str, Any]:
    """One job as the stable JSON object (core keys first, then its regions and quorum,
    then the check's details)."""
    core: dict[str, Any] = {key: shown(getattr(view, key)) if shown else getattr(view, key)
                            for key, shown in _CORE_SHOWN}
    if view.publish_error and view.state == "queued":
        core["publish_error"] = view.publish_error
    if "lastmod" in view.options:  # a sitemap's <lastmod>, kept with the job
        core["lastmod"] = view.options["lastmod"]
    if view.referrers:  # a crawl's: the pages that link here, with the link's text
        core["referrers"] = view.referrers
    if regions is not None:
        core["quorum"] = view.quorum
        core["regions"] = region_rows(view, regions)
    extra = {k: v for k, v in (view.detail or {}).items() if k not in core}
    return {**core, **extra}


def json_line(view: JobView, regions: Sequence[ResultRecord] | None = None) -> str:
    """One job as a line of JSON Lines (the ``runner results --format json`` format); with
    ``regions`` (its region results), its ``quorum`` and ``regions`` object too."""
    return json_safe(json.dumps(to_row(view, regions), ensure_ascii=False, default=str)) + "\n"


def write_json(views: Iterable[JobView], out: TextIO, *, regions: RegionLookup | None = None,
               referrers: ReferrerLookup | None = None) -> int:
    """One object per job per line; with ``regions``, each with its ``regions`` object; with
    ``referrers``, each with its ``referrers`` list."""
    n = 0
    for view, found in with_regions(views, regions, referrers=referrers):
        out.write(json_line(view, found if regions is not None else None))
        n += 1
    return n


def csv_chunks(views: Iterable[JobView], *, regions: RegionLookup | None = None, rows: int = 500,
               referrers: ReferrerLookup | None = None) -> Iterator[str]:
    """CSV text (header first) a few hundred rows at a time (for streaming answers): one row
    per job, or with ``regions`` one per job and region (the job's columns repeated); with
    ``referrers``, a ``referrers`` column after the job's (``URL "text"`` lines)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CORE_KEYS + (("referrers",) if referrers is not None else ())
                    + (CSV_REGION_KEYS if regions is not None else ()))
    n = 0
    # n: the jobs written, after
    for n, (view, found) in enumerate(with_regions(views, regions, referrers=referrers), start=1):
        row = to_row(view)
        cells = ["" if row[k] is None else _csv_value(row[k]) for k in CORE_KEYS]
        if referrers is not None:
            cells.append(_csv_value(referrer_lines(view.referrers or [])))
        if regions is None:
            writer.writerow(cells)
        else:
            for region, result in region_rows(view, found).items():
                writer.writerow(cells + [_csv_value(region)] + ["" if result[k] is None else _csv_value(result[k])
                                                                 for k in REGION_KEYS])
        if n % rows == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def referrer_lines(referrers: Sequence[dict[str, str]]) -> str:
    """Referrers as text, one per line: the page's URL, then the link's text in quotes."""
    return "\n".join(f'{mask_url(r["url"])} "{r["text"]}"' if r["text"] else mask_url(r["url"]) for r in referrers)


def write_csv(views: Iterable[JobView], out: TextIO, *, regions: RegionLookup | None = None,
              referrers: ReferrerLookup | None = None) -> int:
    """``csv_chunks`` into ``out``; returns the number of jobs."""
    n = 0

    def counted() -> Iterator[JobView]:
        nonlocal n
        for view in views:
            n += 1
            yield view

    for chunk in csv_chunks(counted(), regions=regions, referrers=referrers):
        out.write(chunk)
    return n


def _csv_value(value: Any) -> Any:
    if isinstance(value, str):
        value = printable(value)
    # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# XML 1.0 allows tab, newline, carriage return and most other code points; anything else
# (other C0 controls, surrogates, U+FFFE/U+FFFF) would make the report unreadable.
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Valid XML, but a terminal acts on them raw: written as character references instead.
_XML_REFERENCE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _xml_safe(text: str) -> str:
    text = _XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return _XML_REFERENCE.sub(lambda m: f"&#x{ord(m.group()):x};", text)


def _xml_text(value: object) -> str:
    # Not at the top: it imports urllib.request, and every CLI completion imports this module.
    from xml.sax.saxutils import escape

    return _xml_safe(escape("" if value is None else str(value)))


def _xml_attr(value: object) -> str:
    from xml.sax.saxutils import quoteattr

    text = "" if value is None else str(value)
    return _xml_safe(quoteattr(text.replace("\n", " ").replace("\r", " ").replace("\t", " ")))


def write_junit(views: Iterable[JobView], out: TextIO, *, name: str = "urltester",
                tests: int | None = None, failures: int | None = None, skipped: int | None = None,
                regions: RegionLookup | None = None) -> int:
    """JUnit XML, one ``<testcase>`` per job, written as the rows arrive (flat memory).

    A check that failed is a ``<failure>`` (type: the outcome; message: outcome and
    error); a job not checked yet is ``<skipped>``. The suite's counts come first in the
    XML, so a caller that streams passes them in (counted beforehand); otherwise they
    are left out, which CI readers accept. Rows are grouped by batch in ``classname``.
    With ``regions``, each region's result is a line of the case's output (and of its
    failure), after the quorum rule.
    """
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites>\n')
    counts = "".join(
        f" {key}={_xml_attr(value)}" for key, value in (("tests", tests), ("failures", failures), ("skipped", skipped))
        if value is not None
    )
    out.write(f"  <testsuite name={_xml_attr(name)}{counts}>\n")
    n = 0
    for view, found in with_regions(views, regions):
        n += 1
        row = to_row(view)
        region_lines = _region_lines(view, found) if regions is not None else []
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
                       f"attempts: {view.attempts or ''}", f"job id: {view.id}", *region_lines]
            out.write(f"<failure type={_xml_attr(outcome)} message={_xml_attr(message)}>"
                      f"{_xml_text(chr(10).join(details))}</failure>")
        else:
            summary = "\n".join([f"status {view.status_code}, {row['total_ms']} ms", *region_lines])
            out.write(f"<system-out>{_xml_text(summary)}</system-out>")
        out.write("</testcase>\n")
    out.write("  </testsuite>\n</testsuites>\n")
    return n


def _region_lines(view: JobView, found: Sequence[ResultRecord]) -> list[str]:
    lines = [f"quorum: {view.quorum} of {len(view.regions)} region(s)"]
    for region, r in region_rows(view, found).items():
        if r["outcome"] is None:
            lines.append(f"region {region}: pending")
            continue
        code = f", status {r['status_code']}" if r["status_code"] is not None else ""
        ms = f", {r['total_ms']} ms" if r["total_ms"] is not None else ""
        error = f": {r['error']}" if r["error"] and r["outcome"] != "ok" else ""
        lines.append(f"region {region}: {r['outcome']}{code}{ms}{error} (worker {r['worker'] or '-'})")
    return lines


SYMBOLS = {"ok": "✓", "queued": "·", "running": "…", "cancelled": "⊘"}


def state_label(view: JobView) -> str:
    """State or outcome in words with a symbol, never colour alone."""
    if view.state != "done":
        return f"{SYMBOLS[view.state]} {view.state}" if view.state in SYMBOLS else view.state
    if view.ok:
        return "✓ ok"
    return f"✗ {view.outcome or 'failed'}"


def table_lines(views: Iterable[JobView], width: int = 120, *, regions: RegionLookup | None = None,
                referrers: ReferrerLookup | None = None) -> Iterator[str]:
    """The terminal table; with ``regions``, a job that named regions gets a line per region;
    with ``referrers``, a failed job of a crawl a line per page that links to it."""
    header = f"{'ID':>8}  {'STATE':<20} {'CODE':>4} {'MS':>8}  URL / ERROR"
    yield header
    url_width = max(20, width - len(header) + len("URL / ERROR"))
    for v, found in with_regions(views, regions, referrers=referrers):
        ms = "" if v.total_ms is None else f"{v.total_ms:.0f}"
        code = "" if v.status_code is None else str(v.status_code)
        line = f"{v.id:>8}  {state_label(v):<20} {code:>4} {ms:>8}  {printable(mask_url(v.url), url_width)}"
        yield line
        if v.error and not v.ok:
            yield f"{'':>8}  {'':<20} {'':>4} {'':>8}    {printable(v.error, url_width)}"
        if v.referrers and v.ok is False:
            for r in v.referrers:
                text = f' "{r["text"]}"' if r["text"] else ""
                yield (f"{'':>8}  {'':<20} {'':>4} {'':>8}    "
                       f"{printable('linked from ' + mask_url(r['url']) + text, url_width)}")
        if regions is None or v.regions == (DEFAULT_REGION,):
            continue
        for region, r in region_rows(v, found).items():
            label = "… waiting" if r["outcome"] is None else ("✓ ok" if r["outcome"] == "ok" else f"✗ {r['outcome']}")
            code = "" if r["status_code"] is None else str(r["status_code"])
            ms = "" if r["total_ms"] is None else f"{r['total_ms']:.0f}"
            error = printable(r["error"], url_width) if r["error"] and r["outcome"] != "ok" else ""
            yield f"{'':>8}  {printable('  ' + region + ' ' + label, 20):<20} {code:>4} {ms:>8}    {error}".rstrip()
