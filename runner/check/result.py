"""What a check found: :class:`CheckResult`, and how it is made from the check's final attempt.

A result is the result's fields (:mod:`runner.fields`, shared with the store and the
reports), then the check's details: the response, each phase's time summed over the hops,
TLS, retries and the assertions that failed. The checker (:mod:`runner.check.checker`)
fills a :class:`Hop` per request of an :class:`Attempt`; :func:`build_result` turns the
final attempt into the result, and :func:`_evaluate` answers the job's conditions.

Everything a server sends that ends up in a result (reason phrase, title, header
values) is cleaned of control characters and capped (:func:`clean_text`); nothing is
interpreted as markup.
"""

from __future__ import annotations

import html
import itertools
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from runner.check.body import BodyScan
from runner.check.options import CheckOptions, Condition
from runner.check.transport import HopTimes
from runner.fields import ResultFields
from runner.text import mask_url

TITLE_SCAN = 256 * 1024         # the <title> is looked for in the first bytes only
TITLE_MAX = 300
URL_MAX = 2000
HEADER_VALUE_MAX = 500
HEADERS_MAX = 64


@dataclass(kw_only=True)
class CheckResult(ResultFields):
    """What one check found: the result's fields (:class:`runner.fields.ResultFields`), then
    the check's details. ``as_dict()`` is JSON-safe; docs/check.md explains each field."""

    outcome: str                          # a check always has an outcome, ok and attempts
    ok: bool
    attempts: int = 1
    # --- more of the response
    url: str | None = None                # the URL asked for, password masked
    method: str = "GET"
    reason: str | None = None
    http_version: str | None = None
    content_length: int | None = None     # as declared by the server
    headers: dict[str, str] = field(default_factory=dict)   # final response's, cleaned, capped
    redirects: list[dict[str, Any]] = field(default_factory=list)   # [{status, url}] per hop followed
    # --- the connection and phases (ms, summed over the hops of the final attempt)
    ip: str | None = None
    reused: bool | None = None
    dns_ms: float | None = None
    connect_ms: float | None = None
    tls_ms: float | None = None
    ttfb_ms: float | None = None
    transfer_ms: float | None = None
    hops: list[dict[str, Any]] = field(default_factory=list)
    # --- TLS
    tls: dict[str, Any] | None = None     # of the first https hop: the URL asked for
    cert_days: int | None = None          # days left on the earliest-expiring cert of any hop
    # --- retries and assertions
    flaky: bool = False
    retried: list[dict[str, str]] = field(default_factory=list)   # earlier attempts' outcome/error
    failed_conditions: list[str] = field(default_factory=list)
    stale_connection_retried: int = 0     # requests re-sent at once: a reused connection was closed
    elapsed_ms: float | None = None       # the whole check, retries and backoff included

    def as_dict(self) -> dict[str, Any]:
        # Every field already holds JSON-safe values (nested dicts and lists of plain values),
        # so a shallow copy does: dataclasses.asdict's deep copy cost ~5% of a worker's CPU.
        return dict(self.__dict__)


# ---------------------------------------------------------------- text hygiene

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


def clean_text(text: str, limit: int) -> str:
    """Server-sent text made safe to store and show: no control characters, capped."""
    if len(text) <= limit and text.isprintable() and "  " not in text and text.strip() == text:
        return text     # the common case; isprintable() is False for every control character
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def clean_optional(text: str | None) -> str | None:
    return None if text is None else clean_text(text, 300)


def masked(url: str) -> str:
    """runner.jobs.urls.mask_url, with the common no-credentials case answered at once."""
    return url if "@" not in url else mask_url(url)


def url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


# <title> is RCDATA: its content is text and character references, never tags, so a
# search for the first open tag and the next close tag is exact, and linear (html.parser
# was a third of the check's CPU for the same answer).
_TITLE_OPEN = re.compile(rb"<title(?:\s[^<>]{0,200})?>", re.IGNORECASE)
_TITLE_CLOSE = re.compile(rb"</title", re.IGNORECASE)


def extract_title(body: bytes, charset: str) -> str | None:
    """The first <title> as plain text, references decoded, whitespace collapsed, capped."""
    head = body[:TITLE_SCAN]
    opened = _TITLE_OPEN.search(head)
    if opened is None:
        return None
    closed = _TITLE_CLOSE.search(head, opened.end())
    end = closed.start() if closed else opened.end() + TITLE_MAX * 4
    raw = head[opened.end(): min(end, opened.end() + TITLE_MAX * 16)]
    title = clean_text(html.unescape(raw.decode(charset, errors="replace")), TITLE_MAX)
    return title or None


_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)


def charset_of(content_type: str | None) -> str:
    if content_type:
        m = _CHARSET.search(content_type)
        if m:
            name = m.group(1)
            try:
                "".encode(name)
                return name
            except LookupError:
                pass
    return "utf-8"


# ---------------------------------------------------------------- one hop, one attempt


@dataclass
class Hop:
    """One request/response of one attempt (internal; summarised into CheckResult.hops)."""

    url: str
    times: HopTimes
    started: float
    status: int | None = None
    reason: str | None = None
    version: int | None = None
    headers: Any = None
    location: str | None = None
    declared: int | None = None     # Content-Length
    body: bytes = b""               # the first TITLE_SCAN bytes, for the title
    scan: BodyScan | None = None    # the body assertions' answers (see Checker._read)
    nbytes: int | None = None       # body bytes read, decompressed, at most max_bytes
    too_large: bool = False
    ended: float | None = None

    def summary(self) -> dict[str, Any]:
        t = self.times
        transfer = None
        if t.headers_at is not None and self.ended is not None:
            transfer = (self.ended - t.headers_at) * 1000.0
        ttfb = t.ttfb_ms
        return {
            "url": clean_text(masked(self.url), URL_MAX),
            "status": self.status,
            "ip": t.ip,
            "reused": not t.new_conn if self.status is not None or t.ip else None,
            "dns_ms": rounded(t.dns_ms),
            "connect_ms": rounded(t.connect_ms),
            "tls_ms": rounded(t.tls_ms),
            "ttfb_ms": rounded(ttfb),
            "transfer_ms": rounded(transfer),
            "total_ms": rounded(((self.ended or time.perf_counter()) - self.started) * 1000.0),
        }


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Attempt:
    """The outcome of one attempt: a finished hop chain, or a classified failure."""

    __slots__ = ("hops", "outcome", "error", "transient", "retry_after", "note", "stale_retried")

    def __init__(self) -> None:
        self.hops: list[Hop] = []
        self.outcome: str | None = None
        self.error: str | None = None
        self.transient = False
        self.retry_after: float | None = None
        self.note: str | None = None      # why a status was retried (for CheckResult.retried)
        self.stale_retried = 0            # requests re-sent because a reused connection was stale


# ---------------------------------------------------------------- building the result


def build_result(url: str, options: CheckOptions, att: Attempt) -> CheckResult:
    """The result of a check from its final attempt: the hops' timings summed, the last
    response's status, headers, size and title, TLS, and the outcome (the attempt's own
    failure, else too_large, http_error or assertion_failed, else ok)."""
    hops = att.hops
    last = hops[-1] if hops else None
    result = CheckResult(outcome="ok", ok=True, url=masked(url), method=options.method)
    summaries = result.hops = [h.summary() for h in hops]
    if hops and hops[0].location is not None:
        result.redirects = [{"status": h.status,
                             "url": clean_text(masked(urljoin(h.url, h.location)), URL_MAX)}
                            for h in hops if h.location is not None and h.status is not None]
    if last is not None and (last.times.ip is not None or last.status is not None):
        # Sums over the hops that reached a server (a hop refused by the policy did not).
        dns = connect = total = 0.0
        tls = ttfb = transfer = None
        for h, summary in zip(hops, summaries, strict=True):
            t = h.times
            if t.ip is None and h.status is None:
                continue
            dns += t.dns_ms
            connect += t.connect_ms
            total += summary["total_ms"]
            if t.tls_ms is not None:
                tls = (tls or 0.0) + t.tls_ms
            if t.ttfb_ms is not None:
                ttfb = (ttfb or 0.0) + t.ttfb_ms
            if summary["transfer_ms"] is not None:
                transfer = (transfer or 0.0) + summary["transfer_ms"]
        result.dns_ms, result.connect_ms, result.total_ms = rounded(dns), rounded(connect), rounded(total)
        result.tls_ms, result.ttfb_ms, result.transfer_ms = rounded(tls), rounded(ttfb), rounded(transfer)
        result.ip = last.times.ip
        result.reused = summaries[-1]["reused"]
    _tls(result, hops)

    if last is not None and last.status is not None:
        headers = last.headers
        result.status_code = last.status
        result.reason = clean_text(last.reason or "", 100) or None
        result.http_version = {9: "HTTP/0.9", 10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}.get(
            last.version or 0)
        result.final_url = clean_text(masked(last.url), URL_MAX)
        ctype = headers.get("content-type")
        result.content_type = clean_text(ctype, 200) if ctype else None
        result.content_length = last.declared
        result.headers = {clean_text(k.lower(), 100): clean_text(v, HEADER_VALUE_MAX)
                          for k, v in itertools.islice(headers.items(), HEADERS_MAX)}
        result.bytes = last.nbytes
        if last.body and result.content_type and "html" in result.content_type.lower():
            result.title = extract_title(last.body, charset_of(result.content_type))

    if att.outcome is not None:
        result.outcome, result.ok, result.error = att.outcome, False, att.error
        return result
    assert last is not None
    if last.too_large:
        result.outcome, result.ok = "too_large", False
        size = ("is longer" if result.bytes is not None
                else f"declares {result.content_length} bytes")
        result.error = f"body {size}, more than max_bytes {options.max_bytes}"
        return result
    if last.status not in options.status_set:
        result.outcome, result.ok = "http_error", False
        result.error = (f"HTTP {last.status} {result.reason or ''}".rstrip()
                        + f" (expected {options.expect_status})")
        return result
    failures = _assertions(result, last, options)
    if failures:
        result.outcome, result.ok = "assertion_failed", False
        result.failed_conditions = failures
        result.error = "; ".join(failures)
    return result

def _tls(result: CheckResult, hops: list[Hop]) -> None:
    now = time.time()
    earliest: float | None = None
    for hop in hops:
        details = hop.times.tls
        if not details:
            continue
        chain = details.get("chain") or []
        afters = [c["not_after"] for c in chain if c.get("not_after")]
        if afters:
            earliest = min(afters) if earliest is None else min(earliest, *afters)
        if result.tls is None:
            leaf = chain[0] if chain else {}
            result.tls = {
                "protocol": details.get("protocol"),
                "cipher": details.get("cipher"),
                "alpn": details.get("alpn"),
                "verified": details.get("verified"),
                "subject": clean_optional(leaf.get("subject")),
                "issuer": clean_optional(leaf.get("issuer")),
                "san": [clean_text(n, 200) for n in leaf.get("san", [])],
                "not_before": _iso(leaf.get("not_before")),
                "not_after": _iso(leaf.get("not_after")),
                "days_left": _days(leaf.get("not_after"), now),
                "chain_not_after": _iso(min(afters)) if afters else None,
                "chain_days_left": _days(min(afters), now) if afters else None,
                "chain": [{"subject": clean_optional(c["subject"]), "issuer": clean_optional(c["issuer"]),
                           "not_after": _iso(c["not_after"])} for c in chain],
            }
    if earliest is not None:
        result.cert_days = _days(earliest, now)

def _assertions(result: CheckResult, hop: Hop, options: CheckOptions) -> list[str]:
    failures: list[str] = []
    scan = hop.scan or BodyScan.empty(options)
    if options.body_contains is not None and not scan.contains(options.body_contains):
        failures.append(f'body does not contain "{options.body_contains}"')
    if options.body_excludes is not None and scan.contains(options.body_excludes):
        failures.append(f'body contains "{options.body_excludes}"')
    if options.max_ms is not None and (result.total_ms or 0.0) > options.max_ms:
        failures.append(f"took {result.total_ms:.0f} ms, more than max_ms {options.max_ms:g}")
    for cond in options.parsed_conditions:
        problem = _evaluate(cond, result, scan)
        if problem:
            failures.append(problem)
    return failures


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _days(epoch: float | None, now: float) -> int | None:
    if epoch is None:
        return None
    return int((epoch - now) / 86400)    # whole days, truncated toward zero


def _evaluate(cond: Condition, result: CheckResult, scan: BodyScan) -> str | None:
    """None when the condition holds, else words saying why not."""
    field_name = cond.field
    if field_name == "body":
        return None if scan.holds(cond.op, cond.value) else f"condition failed: {cond.text}"
    actual: Any
    if field_name == "status":
        actual = result.status_code
    elif field_name == "redirects":
        actual = len(result.redirects)
    elif field_name.startswith("header."):
        actual = result.headers.get(field_name[7:])
    else:
        actual = getattr(result, field_name)
    if actual is None:
        return f"{cond.text}: {field_name} is not available"
    op, want = cond.op, cond.value
    if op == "in":
        held = actual in want
    elif op == "contains":
        held = want in actual
    elif op == "not contains":
        held = want not in actual
    else:
        if isinstance(want, float):
            actual = float(actual)
        held = {
            "==": actual == want, "!=": actual != want, "<": actual < want,
            "<=": actual <= want, ">": actual > want, ">=": actual >= want,
        }[op]
    if held:
        return None
    shown = actual if not isinstance(actual, float) else f"{actual:g}"
    return f"condition failed: {cond.text} ({field_name} was {unicodedata.normalize('NFC', str(shown))[:100]})"
