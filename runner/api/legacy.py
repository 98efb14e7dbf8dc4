"""The old system's two paths, answered exactly as the old Django app answered them.

Its page (Vue, polling every 5 s) and its scripts call ``POST /api/add_job`` and
``GET /api/get_jobs?limit=&offset=``; they keep working unchanged (docs/api.md):

- ``POST /api/add_job`` with the JSON ``{"url": "…"}``: ``200`` and an empty body; a body
  that is not JSON (or not an object with a text ``url``) ``422``; any other method ``405``.
- ``GET /api/get_jobs``: ``200`` and a JSON list, newest first, of the done jobs'
  ``{"time": "YYYY-MM-DD HH:MM", "url", "result"}``: ``time`` when the job was submitted,
  in the server's zone (``URLTESTER_TIMEZONE``); ``result`` the status code, or the
  error's text when there was no response. ``limit`` (default 10, at most 1000) and
  ``offset`` (default 0) page; one that is not a whole number answers ``200 []``, as the
  old one did.
- An address without a scheme is ``http://`` here, as the old page said ("Protocol
  defaults to HTTP"); everywhere else it is ``https://``.

Tokens still apply (the Guard): the old page sent none, so the proxy in front adds one
(docs/api.md has the nginx snippet). ``/add_job`` and ``/get_jobs`` (routes.py) are this
project's own first take on the old names and stay as they are.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response, Security
from starlette.concurrency import run_in_threadpool

from db import JobFilter, JobView
from runner.api.config import MAX_PAGE
from runner.api.routes import ERRORS, bearer, invalid, runtime, writer
from runner.api.schemas import Problem
from runner.text import mask_url

router = APIRouter(dependencies=[Security(bearer)], tags=["old system"])

DEFAULT_LIMIT = 10
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_WHOLE = re.compile(r"^[0-9]{1,18}$")

OLD_ITEM = {"type": "object", "required": ["time", "url", "result"], "properties": {
    "time": {"type": "string", "description": "Submitted at, `YYYY-MM-DD HH:MM` in URLTESTER_TIMEZONE."},
    "url": {"type": "string"},
    "result": {"oneOf": [{"type": "integer"}, {"type": "string"}],
               "description": "The status code, or the error's text when there was no response."}}}
OLD_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}}}}}}


def with_scheme(text: str) -> str:
    """``example.com/x`` → ``http://example.com/x``: the old page's default."""
    stripped = text.strip()
    return stripped if _SCHEME.match(stripped) or not stripped else "http://" + stripped


@router.post("/api/add_job", status_code=200, response_class=Response, dependencies=[Depends(writer)],
             openapi_extra=OLD_BODY, responses={
                 **ERRORS, 200: {"description": "Added (an empty body, as the old system answered)."},
                 403: {"model": Problem, "description": "The token is read-only."}})
async def old_add_job(request: Request) -> Response:
    """The old system's add_job: `{"url": "…"}`, 200 with an empty body."""
    raw = await request.body()
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid(["body"], "not valid JSON") from None
    if not isinstance(data, dict) or "url" not in data:
        raise invalid(["body", "url"], "field required: a JSON object with `url`")
    if not isinstance(data["url"], str):
        raise invalid(["body", "url"], "must be a string")
    rt = runtime(request)
    report = await run_in_threadpool(rt.submit, [with_scheme(data["url"])])
    request.app.state.metrics.submitted.inc(len(report.job_ids))
    if report.rejected:
        request.app.state.metrics.rejected.inc(len(report.rejected))
        raise invalid(["body", "url"], report.rejected[0].reason)
    return Response(status_code=200)


def _whole(value: str | None, default: int) -> int | None:
    """A query value as the old system read it: absent → the default; not a whole number → None."""
    if value is None:
        return default
    return int(value) if _WHOLE.match(value.strip()) else None


@router.get("/api/get_jobs", response_model=None, responses={**ERRORS, 200: {
    "description": "Done jobs, newest first (a list, as the old system answered).",
    "content": {"application/json": {"schema": {"type": "array", "items": OLD_ITEM}}}}})
async def old_get_jobs(request: Request) -> Response:
    """The old system's get_jobs: `?limit=10&offset=0`, a list of `{time, url, result}`.
    `limit` or `offset` not a whole number: an empty list (as the old system answered)."""
    limit = _whole(request.query_params.get("limit"), DEFAULT_LIMIT)
    offset = _whole(request.query_params.get("offset"), 0)
    answer: type[Response] = request.app.router.default_response_class
    if limit is None or offset is None or limit == 0:
        return answer([])
    rt = runtime(request)
    rows = await run_in_threadpool(rt.store.list_jobs, JobFilter(state="done"), limit=min(limit, MAX_PAGE),
                                   offset=offset)
    zone = request.app.state.zone
    return answer([old_item(v, zone) for v in rows])


def old_item(view: JobView, zone: ZoneInfo | None) -> dict[str, Any]:
    result: Any = view.status_code if view.status_code is not None else (view.error or view.outcome or "")
    return {"time": local_minute(view.submitted_at, zone), "url": mask_url(view.url), "result": result}


def local_minute(when: datetime, zone: ZoneInfo | None) -> str:
    """``YYYY-MM-DD HH:MM`` in ``zone`` (None: the machine's own)."""
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M")
