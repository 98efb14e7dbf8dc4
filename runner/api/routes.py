"""The endpoints: thin path functions over the Runtime, its store calls run off the loop.

``POST /api/v1/jobs`` is :meth:`Runtime.submit`; ``GET /api/v1/jobs`` is the listing of
``runner results`` (each job :func:`runner.jobs.report.to_row`); ``/add_job`` and
``/get_jobs`` are the old system's names for the same two.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import (
    APIRouter,
    Depends,
    Header,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    Security,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from db import JobFilter, JobView
from db.batches import batch_summary
from db.feed import get_batch
from db.grid import quick_counts
from runner.api import events
from runner.api.config import MAX_PAGE
from runner.api.schemas import (
    BATCH_COUNTS,
    NAME_PATTERN,
    BatchOut,
    Cancelled,
    CountsOut,
    JobsIn,
    JobsPage,
    Outcome,
    Problem,
    Ready,
    State,
    Submitted,
    option_problem,
)
from runner.errors import BrokerError, OptionError
from runner.jobs import tokens
from runner.jobs.report import csv_chunks, iso, json_line, to_row, with_regions
from runner.jobs.when import parse_since
from runner.text import ascii_digits, mask_url

STATIC = FilePath(__file__).parent / "static"
MAX_ID = (1 << 63) - 1
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token (no hint which)."},
    422: {"description": "A field is not acceptable; `detail` names it."},
    503: {"model": Problem, "description": "The database or the broker is unreachable."},
}

# Declared for the OpenAPI document (and its fuzzers); the Guard middleware does the checking.
bearer = HTTPBearer(auto_error=False, description="`runner token create NAME` prints one.")


def known_query(request: Request) -> None:
    """A query parameter the path does not take is refused, not ignored: a typo such as
    `?stat=done` would otherwise list every job. So is one given twice (`?batch=a&batch=b`
    would otherwise read as the last one alone: every parameter here takes one value)."""
    route = request.scope.get("route")
    if route is None or not request.query_params:
        return
    known: set[str] = set()
    todo = [route.dependant]
    while todo:
        dependant = todo.pop()
        known.update(p.alias for p in dependant.query_params)
        todo.extend(dependant.dependencies)
    for name in request.query_params:
        if name not in known:
            raise invalid(["query", name], f"unknown parameter (known: {', '.join(sorted(known)) or 'none'})")
        if (times := len(request.query_params.getlist(name))) > 1:
            raise invalid(["query", name], f"given {times} times: give it once")


router = APIRouter(dependencies=[Security(bearer), Depends(known_query)])
public = APIRouter()


def invalid(loc: list[str | int], message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own: ``detail`` is a list naming the field."""
    return HTTPException(422, detail=[{"loc": loc, "msg": message, "type": "value_error"}])


# An age under 100 years (seconds by default; m, h, d, w; a fraction allowed), or a date (and
# time, with seconds' fractions and an offset) that exists in every month: enforced, so what
# the document allows parse_since reads, and what it forbids is refused (422) before it.
_AGE = (r"[0-9]{1,9}(\.[0-9]{1,3})?s?|[0-9]{1,6}(\.[0-9]{1,3})?m|[0-9]{1,5}(\.[0-9]{1,3})?h|"
        r"[0-9]{1,4}(\.[0-9]{1,3})?d|[0-9]{1,3}(\.[0-9]{1,3})?w")
_TIME = r"T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?"
SINCE_PATTERN = rf"^({_AGE}|(19|20)[0-9]{{2}}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])({_TIME})?)$"


def job_filter(
    state: Annotated[State | None, Query(description="queued, running, done or cancelled.")] = None,
    outcome: Annotated[Outcome | None, Query(description="A result's outcome.")] = None,
    batch: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NAME_PATTERN,
                                       description="Batch name or id.")] = None,
    since: Annotated[str | None, Query(
        min_length=1, max_length=64, pattern=SINCE_PATTERN,
        description="Submitted since: an age (30m, 2h, 7d) or an ISO 8601 time.")] = None,
    failed: Annotated[bool, Query(description="Only checks that failed.")] = False,
    text: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NAME_PATTERN,
                                      description="The URL contains this.")] = None,
) -> JobFilter:
    when: datetime | None = None
    if since is not None:
        try:
            when = parse_since(since)
        except (ValueError, OverflowError) as exc:
            raise invalid(["query", "since"], str(exc)) from None
    return JobFilter(state=state, outcome=outcome, batch=batch, since=when, failed=failed, text=text or None)


CURSOR_PATTERN = r"^v1\.[1-9][0-9]{0,17}$"  # what encode_cursor makes, and all decode_cursor takes


def encode_cursor(job_id: int) -> str:
    return f"v1.{job_id}"


def decode_cursor(cursor: str) -> int:
    """The job id a page ends at. (FastAPI checks the pattern first; the schema says it.)"""
    version, _, value = cursor.partition(".")
    if version != "v1" or not ascii_digits(value) or not 0 < int(value) <= MAX_ID:
        raise invalid(["query", "cursor"], "not a cursor from an earlier page's `next`")
    return int(value)


def runtime(request: Request) -> Any:
    return request.app.state.runtime


def writer(request: Request) -> None:
    """The token (checked by the guard) may add jobs."""
    token = request.scope.get("state", {}).get("token")
    if token is None or token.read_only:
        raise HTTPException(403, "this token is read-only: it cannot add jobs")


# ---------------------------------------------------------------------------- adding jobs


async def submit(request: Request, body: JobsIn) -> Submitted:
    from runner.check.options import parse_options

    urls = body.all_urls()
    limit = request.app.state.config.max_urls
    if len(urls) > limit:
        raise HTTPException(413, f"at most {limit} URLs per request; this one has {len(urls)}")
    for name, value in body.options.items():
        problem = option_problem(name, value)
        if problem is not None:
            raise invalid(["body", "options", name], problem)
    try:
        options = parse_options(body.options)
    except OptionError as exc:
        raise invalid(["body", "options", *([exc.where] if exc.where else [])], exc.message) from None
    rt = runtime(request)
    report = await run_in_threadpool(rt.submit, urls, options=options, batch=body.batch,
                                     idempotency_key=body.idempotency_key)
    metrics = request.app.state.metrics
    metrics.submitted.inc(len(report.job_ids))
    metrics.rejected.inc(len(report.rejected))
    jobs = [{"id": i, "url": mask_url(u)} for i, u in zip(report.job_ids, report.urls, strict=True)]
    existed = bool(report.batch and report.batch.existed)
    if existed and report.batch is not None:
        views = await run_in_threadpool(rt.store.list_jobs, JobFilter(batch=str(report.batch.id)),
                                        order="oldest", limit=limit)
        jobs = [{"id": v.id, "url": mask_url(v.url)} for v in views if v.batch_id == report.batch.id]
    return Submitted.model_validate({
        "batch": {"id": report.batch.id, "name": report.batch.name} if report.batch else None,
        "jobs": jobs,
        "rejected": [{"input": _shown(r.text), "reason": r.reason} for r in report.rejected],
        "existed": existed,
    })


def _shown(text: str) -> str:
    return mask_url(text[:200]) + ("…" if len(text) > 200 else "")


SUBMIT_RESPONSES = {**ERRORS, 403: {"model": Problem, "description": "The token is read-only."},
                    413: {"model": Problem, "description": "Over 10,000 URLs, or a body over the size limit."}}


@router.post("/api/v1/jobs", status_code=202, response_model=Submitted, responses=SUBMIT_RESPONSES,
             dependencies=[Depends(writer)], tags=["jobs"])
async def add_jobs(request: Request, body: JobsIn) -> Submitted:
    """Validate, record and enqueue URLs (`runner submit`). Each job's id and normalised URL,
    and every rejected URL with its reason."""
    return await submit(request, body)


FORM_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/JobsIn"}},
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": {"url": {"type": "string", "minLength": 1}}, "required": ["url"]}},
}}}


NO_URL = "no URL given: send `url` (one URL, or a repeated form field) or `urls` (a list)"


@router.post("/add_job", status_code=202, response_model=Submitted, dependencies=[Depends(writer)],
             responses={**SUBMIT_RESPONSES, 415: {"model": Problem, "description": "Neither JSON nor a form."}},
             openapi_extra=FORM_BODY, tags=["old names"])
async def add_job(request: Request) -> Submitted:
    """The old system's add_job: a form field `url` (repeatable) or the JSON of POST /api/v1/jobs."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if not raw.strip():
        raise invalid(["body", "url"], NO_URL)
    if kind == "application/x-www-form-urlencoded":
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        urls = form.get("url", [])
        data: Any = {"url": urls[0]} if len(urls) == 1 else {"urls": urls} if urls else {}
    elif kind in ("application/json", ""):
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise invalid(["body"], "not valid JSON") from None
        except RecursionError:  # hundreds of nested arrays: no body of ours is like that
            raise invalid(["body"], "JSON nested too deep") from None
    else:
        raise HTTPException(415, "send application/json or application/x-www-form-urlencoded")
    if isinstance(data, dict) and not data.get("url") and not data.get("urls"):
        # Nothing to add is a mistake (a form without its field, `{}`), not an empty success.
        raise invalid(["body", "url"], NO_URL)
    try:
        body = JobsIn.model_validate(data)
    except RecursionError:
        raise invalid(["body"], "JSON nested too deep") from None
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    return await submit(request, body)


# ---------------------------------------------------------------------------- reading jobs


def _pages(rt: Any, flt: JobFilter, after: int | None, limit: int | None) -> Iterator[JobView]:
    """Every matching job newest first from ``after``, a page at a time (flat memory)."""
    left = limit
    while left is None or left > 0:
        size = 1000 if left is None else min(1000, left)
        rows = rt.store.list_jobs(flt, limit=size, after=(after,) if after else None, detail=True)
        yield from rows
        if len(rows) < size:
            return
        after = rows[-1].id
        if left is not None:
            left -= len(rows)


async def list_page(request: Request, flt: JobFilter, limit: int | None, cursor: str | None) -> Response:
    after = decode_cursor(cursor) if cursor else None
    rt = runtime(request)
    accept = request.headers.get("accept", "")
    if "application/x-ndjson" in accept:
        return StreamingResponse((json_line(v, found) for v, found in
                                  with_regions(_pages(rt, flt, after, limit), rt.region_results,
                                               referrers=rt.referrers)),
                                 media_type="application/x-ndjson")
    if "text/csv" in accept:
        return StreamingResponse(csv_chunks(_pages(rt, flt, after, limit), regions=rt.region_results,
                                            referrers=rt.referrers),
                                 media_type="text/csv; charset=utf-8")
    size = limit or 100
    rows = await run_in_threadpool(rt.store.list_jobs, flt, limit=size + 1,
                                   after=(after,) if after else None, detail=True)
    more = len(rows) > size
    rows = rows[:size]
    found = await run_in_threadpool(rt.region_results, [v.id for v in rows])
    linked = await run_in_threadpool(rt.referrers, [v.id for v in rows])  # a crawl's; else []
    for v in rows:
        v.referrers = linked.get(v.id, [])
    return request.app.router.default_response_class(  # type: ignore[no-any-return]  # the app's JSON response
        {"jobs": [to_row(v, found.get(v.id, [])) for v in rows],
         "next": encode_cursor(rows[-1].id) if more and rows else None})


LIST_RESPONSES = {**ERRORS, 200: {"model": JobsPage, "content": {
    "application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}},
    "description": "A page of jobs; with Accept: application/x-ndjson or text/csv, every matching job, streamed."}}
LimitQ = Annotated[int | None, Query(ge=1, le=MAX_PAGE, description="Jobs per page (default 100); "
                                     "for NDJSON/CSV the most to stream (default all).")]
CursorQ = Annotated[str | None, Query(min_length=1, max_length=100, pattern=CURSOR_PATTERN,
                                      description="`next` of the previous page.")]


@router.get("/api/v1/jobs", response_model=None, responses=LIST_RESPONSES, tags=["jobs"])
async def list_jobs(request: Request, flt: Annotated[JobFilter, Depends(job_filter)],
                    limit: LimitQ = None, cursor: CursorQ = None) -> Response:
    """Jobs newest first, filtered like `runner results`, a page at a time."""
    return await list_page(request, flt, limit, cursor)


@router.get("/get_jobs", response_model=None, responses=LIST_RESPONSES, tags=["old names"])
async def get_jobs(request: Request, flt: Annotated[JobFilter, Depends(job_filter)],
                   limit: LimitQ = None, cursor: CursorQ = None) -> Response:
    """The old system's get_jobs: GET /api/v1/jobs, listing done jobs unless `state` says otherwise."""
    if flt.state is None and "state" not in request.query_params:
        from dataclasses import replace

        flt = replace(flt, state="done")
    return await list_page(request, flt, limit, cursor)


# `:int` in the paths: the digits 0-9 and nothing else (pydantic alone would read "6\t" as 6).
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/api/v1/jobs/{job_id:int}", responses={**ERRORS, 404: {"model": Problem}}, tags=["jobs"],
            response_model=None)
async def get_job(request: Request, job_id: IdPath) -> Any:
    """One job with everything its check recorded (timing phases, redirects, TLS)."""
    rt = runtime(request)
    view = await run_in_threadpool(rt.store.get_job, job_id)
    if view is None:
        raise HTTPException(404, f"no job {job_id}")
    found = await run_in_threadpool(rt.region_results, [job_id])
    # a crawl's: where it is linked from
    view.referrers = (await run_in_threadpool(rt.referrers, [job_id])).get(job_id, [])
    return to_row(view, found.get(job_id, []))


@router.post("/api/v1/jobs/{job_id:int}/retest", status_code=202, response_model=Submitted, tags=["jobs"],
             responses={**SUBMIT_RESPONSES, 404: {"model": Problem}}, dependencies=[Depends(writer)])
async def retest_job(request: Request, job_id: IdPath) -> Submitted:
    """Check a job's URL again with its options: a new job in a new batch (the TUI's `r`);
    the old job and its result stay."""
    rt = runtime(request)
    report = await run_in_threadpool(rt.retest, [job_id])
    if report.batch is None:
        raise HTTPException(404, f"no job {job_id}")
    views = await run_in_threadpool(rt.store.list_jobs, JobFilter(ids=tuple(report.job_ids)), limit=1)
    request.app.state.metrics.submitted.inc(len(report.job_ids))
    return Submitted.model_validate({
        "batch": {"id": report.batch.id, "name": report.batch.name},
        "jobs": [{"id": v.id, "url": mask_url(v.url)} for v in views], "rejected": [], "existed": False})


@router.get("/api/v1/batches/{batch_id:int}", response_model=BatchOut, responses={**ERRORS, 404: {"model": Problem}},
            tags=["jobs"])
async def get_batch_summary(request: Request, batch_id: IdPath) -> Any:
    """A batch's jobs by state and its results by outcome."""
    store = runtime(request).store

    def read() -> Any:
        batch = get_batch(store, batch_id)
        if batch is None:
            return None
        s = batch_summary(store, batch_id)
        return BatchOut(id=batch.id, name=batch.name, created_at=iso(batch.created_at) or "", size=batch.size,
                        **{name: getattr(s, name) for name in BATCH_COUNTS})

    found = await run_in_threadpool(read)
    if found is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return found


@router.get("/api/v1/counts", response_model=CountsOut, responses=ERRORS, tags=["jobs"])
async def counts(request: Request, flt: Annotated[JobFilter, Depends(job_filter)]) -> CountsOut:
    """How many jobs the filter matches (filtered like the list), and every job's totals."""
    store = runtime(request).store

    def read() -> CountsOut:
        totals = quick_counts(store)
        return CountsOut(matching=store.count_jobs(flt), queued=totals.queued, running=totals.running,
                         done=totals.done, cancelled=totals.cancelled, ok=totals.ok, failed=totals.failed)

    return await run_in_threadpool(read)
CANCEL_RESPONSES = {**ERRORS, 403: {"model": Problem, "description": "The token is read-only."},
                    404: {"model": Problem, "description": "No such batch or job."}}


@router.post("/api/v1/batches/{batch_id:int}/cancel", response_model=Cancelled, responses=CANCEL_RESPONSES,
             dependencies=[Depends(writer)], tags=["jobs"])
async def cancel_batch(request: Request, batch_id: IdPath) -> Cancelled:
    """Take back the batch's queued jobs (`runner cancel --batch`): each becomes `cancelled`
    and no worker checks it. Done and running jobs and their results stay as they are."""
    rt = runtime(request)
    if await run_in_threadpool(get_batch, rt.store, batch_id) is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return Cancelled(cancelled=await run_in_threadpool(lambda: rt.cancel(batch=batch_id)))


@router.post("/api/v1/jobs/{job_id:int}/cancel", response_model=Cancelled, responses=CANCEL_RESPONSES,
             dependencies=[Depends(writer)], tags=["jobs"])
async def cancel_job(request: Request, job_id: IdPath) -> Cancelled:
    """Take back one job if it is still queued (`runner cancel JOB`): `cancelled` is 1, or 0
    when it was already running, done or cancelled."""
    rt = runtime(request)
    if await run_in_threadpool(rt.store.get_job, job_id, detail=False) is None:
        raise HTTPException(404, f"no job {job_id}")
    return Cancelled(cancelled=await run_in_threadpool(lambda: rt.cancel(job_ids=[job_id])))


@router.get("/api/v1/events", response_model=None, tags=["jobs"], responses={
    **ERRORS, 200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                    "description": "One `result` event per stored result; `id` is for Last-Event-ID."},
    503: {"model": Problem, "description": "Too many open event streams, or the database is unreachable."}})
async def event_stream(request: Request, flt: Annotated[JobFilter, Depends(job_filter)],
                       last_event_id: Annotated[str | None, Header(
                           max_length=19, pattern=r"^[0-9]+$",
                           description="The `id` of the last event received: the stream resumes after it.")] = None,
                       ) -> Response:
    """Server-Sent Events: each result as it is committed, filtered like the list."""
    last: int | None = None
    if last_event_id:
        if not ascii_digits(last_event_id) or int(last_event_id) > MAX_ID:
            raise invalid(["header", "last-event-id"], "not an event id from this stream")
        last = int(last_event_id)
    feed: events.Feed = request.app.state.feed
    config = request.app.state.config
    if feed.open_streams >= config.max_event_streams:
        raise HTTPException(503, f"too many open event streams (limit {config.max_event_streams}); retry later")
    metrics = request.app.state.metrics
    credentials = request.headers.get("authorization", "").partition(" ")[2].strip()

    def token_valid() -> bool:  # the token is the stream's lifetime: revoked, the stream ends
        return tokens.verify(feed.store, credentials) is not None

    feed.open_streams += 1
    metrics.event_streams.inc()

    async def body() -> Any:
        try:
            async for chunk in events.stream(feed, flt, last, request.is_disconnected, metrics.events.inc,
                                             token_valid):
                yield chunk
        finally:
            feed.open_streams -= 1
            metrics.event_streams.dec()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# ---------------------------------------------------------------------------- health, metrics, page


@public.get("/healthz", response_model=Problem, tags=["health"])
async def healthz() -> Problem:
    """The process is up (no token needed; touches nothing)."""
    return Problem(detail="ok")


@router.get("/readyz", response_model=Ready, responses={**ERRORS, 503: {"model": Ready}}, tags=["health"])
async def readyz(request: Request) -> Response:
    """The database and the broker answer."""
    rt = runtime(request)

    def look() -> dict[str, str]:
        found = {"database": "ok", "broker": "ok"}
        try:
            rt.store.schema_version()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; say which
            found["database"] = f"unreachable: {type(exc).__name__}"
        try:
            rt.broker.ping()
        except BrokerError as exc:
            found["broker"] = f"unreachable: {exc}"
        return found

    found = await run_in_threadpool(look)
    ready = all(v == "ok" for v in found.values())
    # the app's JSON response class
    return request.app.router.default_response_class(  # type: ignore[no-any-return]
        found, status_code=200 if ready else 503)


@router.get("/metrics", response_model=None, tags=["health"], responses={
    **ERRORS, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics of this process."""
    body, kind = request.app.state.metrics.render()
    return Response(body, media_type=kind)


@public.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
