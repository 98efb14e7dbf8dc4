"""Per-job check options: the value object, and parsing from the CLI, CSV and JSON.

Every validation of an option or a condition happens here, at submit time, so a bad
import line is refused with its file:line before anything is queued; the check itself
(runner/check/checker.py) trusts a ``CheckOptions`` it is handed. This module imports nothing
of the network stack: the submit path and the TUI use it without loading requests.

A job that uses only defaults stores ``{}`` (``to_json`` writes non-default keys only),
so changing a default later changes it for jobs that never chose a value; that is the
intent.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from runner.errors import OptionError

__all__ = [
    "DEFAULT_OPTIONS",
    "OPTION_NAMES",
    "CheckOptions",
    "Condition",
    "StatusSet",
    "parse_condition",
    "parse_options",
    "parse_status_set",
]

METHODS = ("GET", "HEAD")
MAX_DEADLINE = 300.0          # seconds; a check never holds a worker longer than this
MAX_REDIRECTS = 30
MAX_BYTES_LIMIT = 100 * 1024 * 1024
MAX_RETRIES = 10
MAX_HEADERS = 50
MAX_CONDITIONS = 50
MAX_TEXT = 1000               # body_contains / body_excludes / header value / condition length

# Import column names and JSON keys. "header" and "condition" are repeatable (a list in
# JSON; in CSV one cell, several entries separated by newlines).
OPTION_NAMES: tuple[str, ...] = (
    "method",
    "expect_status",
    "body_contains",
    "body_excludes",
    "max_ms",
    "deadline",
    "max_redirects",
    "insecure",
    "max_bytes",
    "header",
    "condition",
    "retries",
    "slow_ms",
    "fail_after",
    "recover_after",
)
# Options that define a URL's state (issue 21), not how it is checked: stored with the job
# like the others, and read by the store when it records the job's result (db/history.py).
STATE_OPTIONS: tuple[str, ...] = ("slow_ms", "fail_after", "recover_after")
MAX_STREAK = 100              # --fail-after / --recover-after
OPTION_ALIASES = {"headers": "header", "conditions": "condition"}
# Keys that may ride along in an import row (or a job's stored options) but are not options:
# a sitemap's <lastmod> is kept with its job (runner/jobs/documents.py).
_IGNORED_KEYS = frozenset({"url", "lastmod", "crawl"})  # a crawl job's marker too (runner/jobs/crawl.py)


# ---------------------------------------------------------------- expected status codes


@dataclass(frozen=True)
class StatusSet:
    """A set of HTTP status codes written as ranges: ``200-299,304``."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, code: object) -> bool:
        if isinstance(code, int):
            for lo, hi in self.ranges:
                if lo <= code <= hi:
                    return True
        return False

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


_STATUS_TOKEN = re.compile(r"^(?:([1-5])xx|(\d{3})(?:-(\d{3}))?)$", re.IGNORECASE)


def parse_status_set(text: str) -> StatusSet:
    """Parse ``200-299,304`` or ``2xx,304``; raises ValueError with a readable message."""
    ranges: list[tuple[int, int]] = []
    for token in text.replace(" ", "").split(","):
        if not token:
            raise ValueError(f"empty entry in status list {text!r}")
        m = _STATUS_TOKEN.match(token)
        if not m:
            raise ValueError(f"{token!r} is not a status code, a range like 200-299, or 2xx")
        if m.group(1):
            lo = int(m.group(1)) * 100
            hi = lo + 99
        else:
            lo = int(m.group(2))
            hi = int(m.group(3)) if m.group(3) else lo
        if not (100 <= lo <= 599 and 100 <= hi <= 599):
            raise ValueError(f"{token!r}: status codes are between 100 and 599")
        if lo > hi:
            raise ValueError(f"{token!r}: range goes backwards")
        ranges.append((lo, hi))
    if not ranges:
        raise ValueError("no status codes given")
    return StatusSet(tuple(ranges))


# ---------------------------------------------------------------- conditions

# Fields a condition can test, and their kind. The names are the result's field names.
NUMBER_FIELDS = frozenset({
    "status", "total_ms", "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "transfer_ms",
    "bytes", "content_length", "cert_days", "attempts", "redirects",
})
TEXT_FIELDS = frozenset({
    "body", "title", "content_type", "final_url", "ip", "http_version", "reason",
})
# plus header.<Name> (text)

_NUMBER_OPS = ("==", "!=", "<=", ">=", "<", ">")
_COND = re.compile(
    r"""^\s*
    (?P<field>[A-Za-z_]+(?:\.[A-Za-z0-9!#$%&'*+.^_`|~-]+)?)
    \s*
    (?P<op>==|!=|<=|>=|<|>|(?<=\s)(?:in|contains|not\s+contains|!contains)(?=\s)|!contains(?=\s))
    \s*
    (?P<value>.*?)
    \s*$""",
    re.VERBOSE,
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@dataclass(frozen=True)
class Condition:
    """One assertion on a result, e.g. ``total_ms < 500`` or ``body contains "OK"``.

    ``value`` is a float for number fields, a StatusSet for ``status in ...``, else str.
    """

    field: str
    op: str          # ==, !=, <, <=, >, >=, in, contains, not contains
    value: Any
    text: str        # canonical spelling, what to_json stores and messages quote

    def __str__(self) -> str:
        return self.text


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        inner = raw[1:-1]
        return re.sub(r"\\(.)", r"\1", inner)
    if any(ch.isspace() for ch in raw):
        raise ValueError(f"put text with spaces in double quotes: {raw!r}")
    return raw


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fmt_number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def parse_condition(text: str) -> Condition:
    """Parse one condition; raises ValueError saying what is wrong with it."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"condition longer than {MAX_TEXT} characters")
    if any(ord(ch) < 32 and ch != "\t" for ch in text):
        raise ValueError("condition contains control characters")
    m = _COND.match(text)
    if not m:
        raise ValueError(
            f"cannot read condition {text!r}; write FIELD OP VALUE, "
            'e.g. "total_ms < 500", "status in 200-299", \'body contains "OK"\''
        )
    field, op, raw = m.group("field"), " ".join(m.group("op").split()), m.group("value")
    if op == "!contains":
        op = "not contains"
    if not raw:
        raise ValueError(f"condition {text!r} has no value")
    lowered = field.lower()
    if lowered.startswith(("header.", "headers.")):
        name = field.split(".", 1)[1]
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a header name")
        field = "header." + name.lower()
        kind = "text"
    elif lowered in NUMBER_FIELDS:
        field, kind = lowered, "number"
    elif lowered in TEXT_FIELDS:
        field, kind = lowered, "text"
    else:
        known = ", ".join(sorted(NUMBER_FIELDS | TEXT_FIELDS)) + ", header.NAME"
        raise ValueError(f"unknown field {field!r} in condition {text!r} (known: {known})")

    value: Any
    if op == "in":
        if field != "status":
            raise ValueError(f"'in' works with status only: {text!r}")
        value = parse_status_set(raw)
        canon = f"status in {value}"
    elif kind == "number":
        if op not in _NUMBER_OPS:
            raise ValueError(f"{field} is a number; use one of {' '.join(_NUMBER_OPS)}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{field} is a number, {raw!r} is not") from None
        if not math.isfinite(value):
            raise ValueError(f"{raw!r} is not a finite number")
        canon = f"{field} {op} {_fmt_number(value)}"
    else:
        if op not in ("==", "!=", "contains", "not contains"):
            raise ValueError(f"{field} is text; use ==, !=, contains or not contains")
        value = _unquote(raw)
        canon = f"{field} {op} {_quote(value)}"
    return Condition(field=field, op=op, value=value, text=canon)


# ---------------------------------------------------------------- the options


@dataclass(frozen=True)
class CheckOptions:
    """What to check about one job's URL. Built by ``parse_options``; immutable."""

    method: str = "GET"                      # GET | HEAD
    expect_status: str = "200-399"           # normalised, e.g. "200-299,304"
    body_contains: str | None = None
    body_excludes: str | None = None
    max_ms: float | None = None
    deadline: float = 30.0                   # seconds, the whole check incl. retries, redirects
    max_redirects: int = 10                  # 0 = don't follow
    insecure: bool = False
    max_bytes: int = 1048576
    headers: tuple[tuple[str, str], ...] = ()
    conditions: tuple[str, ...] = ()         # canonical condition texts
    retries: int = 3                         # attempts in total for transient failures
    slow_ms: float | None = None             # ok but slower than this: the URL's state is slow
    fail_after: int = 1                      # consecutive failures before a URL is failing
    recover_after: int = 1                   # consecutive passes before a failing URL recovers

    @property
    def status_set(self) -> StatusSet:
        return _status_set_cached(self.expect_status)

    @property
    def parsed_conditions(self) -> tuple[Condition, ...]:
        if not self.conditions:
            return ()
        return tuple(_condition_cached(c) for c in self.conditions)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict of the non-default options only (a default job stores ``{}``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name == "headers":
                out["header"] = [f"{k}: {v}" for k, v in value]
            elif f.name == "conditions":
                out["condition"] = list(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckOptions:
        """Inverse of ``to_json``; raises OptionError on bad data."""
        if not isinstance(data, Mapping):
            raise OptionError(f"options must be a JSON object, not {type(data).__name__}")
        return parse_options(data)


DEFAULT_OPTIONS = CheckOptions()

# ---------------------------------------------------------------- parsing raw values

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_SIZE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024,
               "m": 1024 * 1024, "mb": 1024 * 1024, "mib": 1024 * 1024}


def _is_unset(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _unstorable(value: object) -> str | None:
    """Why a value cannot be stored (PostgreSQL's text and jsonb take no NUL, and nothing
    encodes a lone surrogate from a JSON ``"\\ud800"``), or None."""
    texts = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] if isinstance(
        value, list | tuple) else []
    for text in texts:
        bad = _UNSTORABLE.search(text)
        if bad is not None:
            return "contains a NUL character" if bad.group() == "\x00" else (
                f"is not valid Unicode (lone surrogate U+{ord(bad.group()):04X})")
    return None


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise ValueError(f"longer than {MAX_TEXT} characters")
    return value


def _number(value: object, *, integer: bool) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    if integer and not number.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    return number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueError(f"{value!r} is not true or false")


def _size(value: object) -> int:
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a size (bytes, or with k/KiB/M/MiB)")
        unit = m.group(2).lower() if m.group(2) else None
        return int(m.group(1)) * _SIZE_UNITS[unit]
    return int(_number(value, integer=True))


def _list(value: object) -> list[str]:
    """A repeatable option: a list in JSON, one or several lines in a CSV cell or flag."""
    if isinstance(value, str):
        return [line for line in value.splitlines() if line.strip()]
    if isinstance(value, list | tuple):
        items: list[str] = []
        for item in value:
            if isinstance(item, list | tuple) and len(item) == 2:   # ("Name", "value")
                items.append(f"{item[0]}: {item[1]}")
            elif isinstance(item, str):
                items.append(item)
            else:
                raise ValueError(f"expected text entries, got {type(item).__name__}")
        return items
    raise ValueError(f"expected text or a list, got {type(value).__name__}")


def _header(entry: str) -> tuple[str, str]:
    name, sep, value = entry.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ValueError(f"{entry!r} is not 'Name: value'")
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid header name")
    if len(value) > MAX_TEXT or any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in value):
        raise ValueError(f"header {name} has control characters or is too long")
    if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
        raise ValueError(f"header {name} is set by the check itself")
    return name, value


def parse_options(raw: Mapping[str, object], where: str | None = None) -> CheckOptions:
    """Build CheckOptions from CLI strings, CSV cells ('' means unset) or JSON values.

    Raises OptionError(message, where=...) naming the option and the bad value. Every
    validation happens here (conditions are parsed here too), never at check time.
    ``where`` is prefixed to the message's location (e.g. ``jobs.csv:12``).
    """
    values: dict[str, Any] = {}

    def fail(name: str, problem: str) -> OptionError:
        place = f"{where}: {name}" if where else name
        return OptionError(problem, where=place)

    for key, value in raw.items():
        name = OPTION_ALIASES.get(key, key) if isinstance(key, str) else key
        if name in _IGNORED_KEYS:
            continue
        if name not in OPTION_NAMES:
            raise fail(repr(key)[1:-1] if isinstance(key, str) else str(key),
                       f"unknown option (known: {', '.join(OPTION_NAMES)})")
        problem = _unstorable(value)
        if problem is not None:
            raise fail(name, problem)
        if _is_unset(value) or (isinstance(value, list | tuple) and not value):
            continue
        try:
            if name == "method":
                method = _text(name, value).strip().upper()
                if method not in METHODS:
                    raise ValueError(f"{value!r} is not one of {', '.join(METHODS)}")
                values["method"] = method
            elif name == "expect_status":
                text = value if isinstance(value, str) else str(_number(value, integer=True))[:-2]
                values["expect_status"] = str(parse_status_set(_text(name, text)))
            elif name in ("body_contains", "body_excludes"):
                values[name] = _text(name, value)
            elif name == "max_ms":
                number = _number(value, integer=False)
                if number <= 0:
                    raise ValueError("must be more than 0")
                values["max_ms"] = number
            elif name == "deadline":
                number = _number(value, integer=False)
                if not 0 < number <= MAX_DEADLINE:
                    raise ValueError(f"must be more than 0 and at most {MAX_DEADLINE:g} seconds")
                values["deadline"] = number
            elif name == "max_redirects":
                number = _number(value, integer=True)
                if not 0 <= number <= MAX_REDIRECTS:
                    raise ValueError(f"must be between 0 and {MAX_REDIRECTS}")
                values["max_redirects"] = int(number)
            elif name == "insecure":
                values["insecure"] = _bool(value)
            elif name == "max_bytes":
                size = _size(value)
                if not 0 <= size <= MAX_BYTES_LIMIT:
                    raise ValueError(f"must be between 0 and {MAX_BYTES_LIMIT} (100 MiB)")
                values["max_bytes"] = size
            elif name == "retries":
                number = _number(value, integer=True)
                if not 1 <= number <= MAX_RETRIES:
                    raise ValueError(f"must be between 1 and {MAX_RETRIES} (attempts in total)")
                values["retries"] = int(number)
            elif name == "slow_ms":
                number = _number(value, integer=False)
                if number <= 0:
                    raise ValueError("must be more than 0")
                values["slow_ms"] = number
            elif name in ("fail_after", "recover_after"):
                number = _number(value, integer=True)
                if not 1 <= number <= MAX_STREAK:
                    raise ValueError(f"must be between 1 and {MAX_STREAK}")
                values[name] = int(number)
            elif name == "header":
                entries = _list(value)
                if len(entries) > MAX_HEADERS:
                    raise ValueError(f"at most {MAX_HEADERS} headers")
                values["headers"] = tuple(_header(e) for e in entries)
            elif name == "condition":
                entries = _list(value)
                if len(entries) > MAX_CONDITIONS:
                    raise ValueError(f"at most {MAX_CONDITIONS} conditions")
                values["conditions"] = tuple(parse_condition(e).text for e in entries)
        except ValueError as exc:
            raise fail(name, str(exc)) from None
    return CheckOptions(**values)



# Options arrive as text with every message; parse each distinct text once. Bounded, since
# the texts come from users and imports (the parsed values are frozen, so safe to share).
_status_set_cached = functools.lru_cache(maxsize=1000)(parse_status_set)
_condition_cached = functools.lru_cache(maxsize=5000)(parse_condition)
