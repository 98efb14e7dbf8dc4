"""Request bodies and answers: the OpenAPI document is the API's contract (and what the
tests fuzz). A job's JSON is :func:`runner.jobs.report.to_row`, the keys of
``runner results --format json``; ``Job`` only describes it, and is built from the same
keys (the result's fields are declared once, in :mod:`runner.fields`)."""

from __future__ import annotations

import dataclasses
import typing
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from db import CHANGES, STATES, URL_STATES, Counts, JobView
from runner.check.options import (
    MAX_BYTES_LIMIT,
    MAX_CONDITIONS,
    MAX_DEADLINE,
    MAX_HEADERS,
    MAX_REDIRECTS,
    MAX_RETRIES,
    MAX_STREAK,
    MAX_TEXT,
)
from runner.jobs.history import CHANGE_KINDS
from runner.jobs.report import CORE_KEYS, OUTCOMES

State = Literal[STATES]  # type: ignore[valid-type]  # the one list of states, at import
Outcome = Literal[OUTCOMES]  # type: ignore[valid-type]  # a job's outcomes: the check's, and no_worker
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # no control characters in names, filters, keys


MAX_DEPTH = 8  # nesting of `options` (a header map is two deep; more is not an option of ours)


def _plain_text(value: Any, where: str, depth: int = 0, *, nul: bool = True) -> None:
    """PostgreSQL refuses NUL in text and JSON, and a lone surrogate (``"\\ud800"`` in JSON)
    cannot be written as UTF-8 at all: name the field before anything is recorded or
    queued, rather than fail while answering."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} deep")
    if isinstance(value, str):
        if nul and "\x00" in value:
            raise ValueError(f"{where} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _plain_text(k, where, depth + 1)
            _plain_text(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _plain_text(v, f"{where}[{i}]", depth + 1, nul=nul)


_STATUS = "[1-5][0-9][0-9]"
_NUMBER_FIELD = "(status|total_ms|ttfb_ms|bytes|redirects|attempts)"
_TEXT = {"type": "string", "maxLength": MAX_TEXT, "pattern": "^[^\\x00]*$"}


def _unset_or(schema: dict[str, Any]) -> dict[str, Any]:
    """``null`` (and, for text, ``""``) leaves an option unset."""
    return {"anyOf": [schema, {"type": "null"}]}


# What the server takes, as far as JSON Schema can say it: the names, the JSON types and the
# bounds, which the server enforces (``_typed``); the patterns are the simple forms of each
# text (runner.check.options.parse_options reads more, and refuses the rest with a 422
# naming the option). One declaration: the types are checked from it.
_HEADERS = {"type": "array", "maxItems": MAX_HEADERS, "description": "`Name: value` sent with each attempt.",
            "items": {"type": "string", "pattern": "^X-[A-Za-z0-9-]{1,40}: [!-~]{1,200}$"}}
_CONDITIONS = {"type": "array", "maxItems": MAX_CONDITIONS,
               "description": 'FIELD OP VALUE: "total_ms < 500", "status in 200-299", \'body contains "OK"\'.',
               "items": {"type": "string", "pattern": f"^{_NUMBER_FIELD} (<|>|<=|>=|==|!=) [0-9]{{1,6}}$"}}
_OPTION_TYPES: dict[str, dict[str, Any]] = {
    "method": {"type": "string", "enum": ["GET", "HEAD", ""]},
    "expect_status": {"type": "string", "pattern": f"^({_STATUS}(,{_STATUS})*)?$",
                      "description": "Status codes, ranges or classes: 200, 200-299,304, 2xx."},
    "body_contains": _TEXT,
    "body_excludes": _TEXT,
    "max_ms": {"type": "number", "exclusiveMinimum": 0},
    "deadline": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DEADLINE, "description": "Seconds."},
    "max_redirects": {"type": "integer", "minimum": 0, "maximum": MAX_REDIRECTS},
    "insecure": {"type": "boolean"},
    "max_bytes": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_BYTES_LIMIT},
                            {"type": "string", "pattern": "^([0-9]{1,2}(k|KiB|M|MiB)?)?$"}],
                  "description": "Bytes, or a size such as 256k or 10MiB."},
    "retries": {"type": "integer", "minimum": 1, "maximum": MAX_RETRIES, "description": "Attempts in total."},
    "header": _HEADERS, "headers": _HEADERS,
    "condition": _CONDITIONS, "conditions": _CONDITIONS,
    "slow_ms": {"type": "number", "exclusiveMinimum": 0, "description": "Ok but slower: the URL's state is slow."},
    "fail_after": {"type": "integer", "minimum": 1, "maximum": MAX_STREAK,
                   "description": "Consecutive failures before the URL's state is failing."},
    "recover_after": {"type": "integer", "minimum": 1, "maximum": MAX_STREAK,
                      "description": "Consecutive passes before a failing URL is ok again."},
}
OPTIONS_SCHEMA: dict[str, Any] = {"additionalProperties": False,
                                  "properties": {name: _unset_or(schema) for name, schema in _OPTION_TYPES.items()}}


def _json_types(schema: dict[str, Any]) -> set[str]:
    if "anyOf" in schema:
        return set().union(*(_json_types(s) for s in schema["anyOf"]))
    return {schema["type"]}


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    """The JSON type, enum, bounds and item count of ``schema`` (patterns are parse_options')."""
    if "anyOf" in schema:
        return any(_fits(value, s) for s in schema["anyOf"])
    kind = schema["type"]
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str) and ("enum" not in schema or value in schema["enum"])
    if kind == "array":
        return (isinstance(value, list) and all(isinstance(v, str) for v in value)
                and len(value) <= schema.get("maxItems", len(value)))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "integer" and not float(value).is_integer():
        return False
    return bool(schema.get("minimum", value) <= value <= schema.get("maximum", value)
                and value > schema.get("exclusiveMinimum", value - 1))


def option_problem(name: str, value: Any) -> str | None:
    """What is wrong with a known option's value by the document (None: nothing it can tell;
    the names, and the texts' meaning, are parse_options' to judge)."""
    schema = OPTIONS_SCHEMA["properties"].get(name)
    if schema is None or _fits(value, schema):
        return None
    enum = [v for s in schema["anyOf"] for v in s.get("enum", ())]
    if enum:
        return f"{value!r} is not one of {', '.join(v for v in enum if v)}"
    kinds = sorted(_json_types(schema) - {"null"})
    bounds = [f"from {s['minimum']:g} to {s['maximum']:g}" if "minimum" in s and "maximum" in s
              else f"more than {s['exclusiveMinimum']:g}" if "exclusiveMinimum" in s and "maximum" not in s
              else f"more than {s['exclusiveMinimum']:g} and at most {s['maximum']:g}" if "exclusiveMinimum" in s
              else f"at most {s['maxItems']} entries" if "maxItems" in s else ""
              for s in schema["anyOf"] if s.get("type") in ("integer", "number", "array")]
    return f"expected {' or '.join(kinds)}{' of text' if kinds == ['array'] else ''}" + (
        f" ({bounds[0]})" if bounds and bounds[0] else "")


class JobsIn(BaseModel):
    """One or many URLs with the check options of ``runner submit`` (``url`` for one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["urls"]}, {"required": ["url"]}],
        "examples": [{"urls": ["https://example.com/", "example.org/health"], "options": {"expect_status": "200"},
                      "batch": "nightly", "idempotency_key": "nightly-2026-12-01"}]})

    # Not nullable (`null` is refused) yet optional: one of the two must be there.
    urls: list[str] = Field(None, min_length=1,  # type: ignore[arg-type]
                            description="URLs to check (1 to 10,000; more is 413).")
    url: str = Field(None, min_length=1,  # type: ignore[assignment]
                     description="One URL (the old add_job's field); with `urls`, added to them.")
    options: dict[str, Any] = Field(default_factory=dict, json_schema_extra=OPTIONS_SCHEMA,
                                    description="Check options, as `runner submit`'s flags (see docs/check.md); "
                                    "any other name is refused.")
    batch: str | None = Field(None, max_length=200, pattern=NAME_PATTERN, description="A label for the batch.")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200, pattern=NAME_PATTERN,
                                        description="Repeating a request with the same key adds nothing and "
                                        "answers with the first request's jobs.")

    @field_validator("options", "urls", "url", "batch", "idempotency_key")
    @classmethod
    def _text(cls, value: Any, info: ValidationInfo) -> Any:
        # A URL with a NUL is one rejected URL among the others (runner.jobs.urls says why).
        _plain_text(value, info.field_name or "body", nul=info.field_name not in ("urls", "url"))
        return value

    @model_validator(mode="after")
    def _one_of(self) -> JobsIn:
        if self.urls is None and self.url is None:
            raise ValueError("give `urls` (a list) or `url` (one URL)")
        return self

    def all_urls(self) -> list[str]:
        return [*(self.urls or []), *([self.url] if self.url is not None else [])]


class SubmittedJob(BaseModel):
    id: int
    url: str = Field(description="The normalised URL (password masked).")


class RejectedUrl(BaseModel):
    input: str = Field(description="What was sent (password masked, cut at 200 characters).")
    reason: str


class BatchRef(BaseModel):
    id: int
    name: str


class Submitted(BaseModel):
    batch: BatchRef | None
    jobs: list[SubmittedJob]
    rejected: list[RejectedUrl]
    existed: bool = Field(description="True when the idempotency key matched an earlier request.")


def _shown_type(hint: Any) -> Any:
    """A JobView attribute's type as JSON shows it: times are ISO 8601 text."""
    if hint is datetime:
        return str
    if hint == datetime | None:
        return str | None
    return hint


_JOB_TYPES = typing.get_type_hints(JobView)  # the job's own fields, and the result's (runner.fields)
# Exactly the object of ``runner results --format json`` (runner.jobs.report.CORE_KEYS, built
# from the result's one declaration): these keys, then the check's details.
Job = create_model(  # type: ignore[call-overload]  # fields from a dict: the overloads want them written out
    "Job", __config__=ConfigDict(extra="allow"),
    __doc__="Exactly the object of ``runner results --format json``: these keys, then the\n"
            "check's details (timings, redirects, TLS ...).",
    **{key: (State if key == "state" else _shown_type(_JOB_TYPES[key]), ...) for key in CORE_KEYS},
)


class JobsPage(BaseModel):
    jobs: list[Job]  # type: ignore[valid-type]  # built from the one declaration above, not written out
    next: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class CountsOut(BaseModel):
    """How many jobs the filter matches, and the totals of every job (the page's header)."""

    matching: int = Field(description="Jobs the filter matches: what the list pages through.")
    queued: int = Field(description="Every job still queued.")
    running: int = Field(description="Every job being checked.")
    done: int = Field(description="Every job checked.")
    cancelled: int = Field(description="Every job taken back before its check (runner cancel).")
    ok: int = Field(description="Results that are ok.")
    failed: int = Field(description="Results that failed.")


# A batch's counts are db.Counts' fields (those without a scope: what every count has).
BATCH_COUNTS = tuple(f.name for f in dataclasses.fields(Counts) if "scope" not in f.metadata)
_COUNT_TYPES = typing.get_type_hints(Counts)
BatchOut = create_model(  # type: ignore[call-overload]  # as Job's
    "BatchOut", id=(int, ...), name=(str, ...), created_at=(str, ...), size=(int, ...),
    **{name: (_COUNT_TYPES[name], ...) for name in BATCH_COUNTS})


class Cancelled(BaseModel):
    cancelled: int = Field(description="How many queued jobs became `cancelled` (0: none was still queued).")


class Problem(BaseModel):
    detail: str


class Ready(BaseModel):
    database: str
    broker: str


# ---------------------------------------------------------------------------- URLs over time
# The objects of `runner urls`, `runner history` and `runner changes --format json`
# (runner.jobs.history builds them for both; tests/api/test_url_keys.py holds them equal).

UrlState = Literal[URL_STATES]  # type: ignore[valid-type]  # the states' one tuple (db.URL_STATES)
ChangeKind = Literal[CHANGE_KINDS]  # type: ignore[valid-type]  # a comparison's kinds
StateChange = Literal[CHANGES]  # type: ignore[valid-type]  # what moves a URL's state


class LastCheck(BaseModel):
    job_id: int
    outcome: str | None
    status_code: int | None
    total_ms: float | None
    error: str | None
    title: str | None = Field(description="The page's <title>, as text (null when none, or once pruned).")


class Latency(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class UrlOut(BaseModel):
    """One URL: its state, since when, its latest check, and its figures in the window."""

    url: str = Field(description="The normalised URL (password masked).")
    state: UrlState
    since: str | None = Field(description="When the state last changed (ISO 8601).")
    last_checked_at: str | None
    last: LastCheck | None = Field(description="The latest check; null when never checked.")
    checks: int = Field(description="Checks in the window.")
    ok: int = Field(description="Checks in the window that passed.")
    uptime: float | None = Field(description="ok / checks (0 to 1); null without checks.")
    latency_ms: Latency = Field(description="Percentiles of the window's check times.")
    id: int = Field(description="The URL's id: `GET /api/v1/urls/history?id=` opens its story (the URL shown here "
                                "is masked when it holds a password, the id is not).")


class UrlsPage(BaseModel):
    urls: list[UrlOut]
    next: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class UrlChangeOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    at: str
    from_: UrlState | None = Field(alias="from", description="null: the URL's first check.")
    to: UrlState
    outcome: str
    status_code: int | None
    error: str | None
    job_id: int


class PointOut(BaseModel):
    job_id: int
    batch: str | None
    checked_at: str
    outcome: str
    status_code: int | None
    total_ms: float | None
    error: str | None
    region: str | None = Field(description="A region's check of a job that named regions; null: the job's own.")


class HistoryOut(UrlOut):
    """A URL's story: the URL's object, its changes and its recent checks, newest first."""

    changes: list[UrlChangeOut]
    recent: list[PointOut]


class CheckSide(BaseModel):
    job_id: int
    outcome: str
    status_code: int | None
    total_ms: float | None
    final_url: str | None
    checked_at: str | None


class DiffOut(BaseModel):
    url: str
    change: ChangeKind
    before: CheckSide | None = Field(description="null: the URL is new.")
    after: CheckSide | None = Field(description="null: the URL is gone.")
    url_id: int = Field(description="The URL's id, as `id` in `/api/v1/urls`: `GET /api/v1/urls/history?id=` opens "
                                    "its story.")


# as Job's
ChangeCounts = create_model("ChangeCounts", **{kind: (int, ...) for kind in CHANGE_KINDS})  # type: ignore[call-overload]


class ChangesOut(BaseModel):
    changes: list[DiffOut] = Field(description="Each URL that changed, at most `limit` (failures first).")
    counts: ChangeCounts = Field(description="How many of each kind, over every change (not only those listed).")  # type: ignore[valid-type]
    batch: BatchRef | None = Field(description="The batch compared (with `batch`); null with `since`.")


class BatchSeen(BaseModel):
    id: int
    name: str
    created_at: str


class UrlSummary(BaseModel):
    """How many URLs are in each state, and the latest batch (the page's header)."""

    ok: int
    slow: int
    failing: int
    pending: int
    total: int
    last_batch: BatchSeen | None = Field(
        description="The newest batch: what \"changes since the last batch\" compares.")
