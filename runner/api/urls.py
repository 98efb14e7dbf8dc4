"""URLs over time in the API: ``GET /api/v1/urls``, ``/api/v1/urls/summary``,
``/api/v1/urls/history`` and ``/api/v1/changes`` (issue 22; docs/api.md).

Each answer is built by the functions that build ``runner urls``, ``runner history`` and
``runner changes --format json`` (runner.jobs.history), so the keys are the CLI's; the
models in runner.api.schemas describe them for the OpenAPI document. A read token is
enough for all of them.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Security
from starlette.concurrency import run_in_threadpool

from db.grid import recent_batches
from db.urls import (
    SORTS,
    UrlFilter,
    find_batch,
    get_url,
    list_urls,
    recent_checks,
    state_counts,
    url_changes,
)
from runner.api.config import MAX_PAGE
from runner.api.routes import ERRORS, bearer, invalid, known_query, runtime
from runner.api.schemas import (
    NAME_PATTERN,
    ChangesOut,
    HistoryOut,
    Problem,
    UrlsPage,
    UrlState,
    UrlSummary,
)
from runner.errors import InvalidURL
from runner.jobs.history import (
    change_counts,
    compare,
    diff_object,
    history_object,
    parse_slower,
    parse_window,
    url_object,
)
from runner.jobs.report import iso
from runner.jobs.urls import MAX_URL_LENGTH
from runner.jobs.when import parse_since
from runner.text import mask_url

DEFAULT_WINDOW = "30d"  # the CLI's
MAX_OFFSET = 10**9
MAX_ID = 2**63 - 1  # urls.id is a bigint
Sort = Literal[SORTS]  # type: ignore[valid-type]  # the CLI's one tuple of sorts
router = APIRouter(dependencies=[Security(bearer), Depends(known_query)])
NOT_FOUND = {**ERRORS, 404: {"model": Problem, "description": "No such batch (or the URL was never checked)."}}

TextQ = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NAME_PATTERN)]
AgeQ = Annotated[str | None, Query(min_length=1, max_length=64,
                                   description="An age (30m, 2h, 7d) or an ISO 8601 time.")]
RegionQ = Annotated[str | None, Query(min_length=1, max_length=64, pattern=NAME_PATTERN,
                                      description="Only this region's checks (a job that named regions has one per "
                                                  "region).")]


def _when(name: str, text: str | None) -> datetime | None:
    """An age ago or an ISO time; malformed: 422 naming the parameter."""
    if text is None:
        return None
    try:
        return parse_since(text)
    except (ValueError, OverflowError) as exc:
        raise invalid(["query", name], str(exc)) from None


def _window(text: str) -> datetime:
    try:
        return parse_window(text)
    except (ValueError, OverflowError) as exc:
        raise invalid(["query", "window"], str(exc)) from None


def _batch(store: Any, name: str, param: str) -> int:
    found = find_batch(store, name)
    if found is None:
        raise HTTPException(404, f"{param}: no batch {name!r}")
    return found


def encode_offset(offset: int) -> str:
    return base64.urlsafe_b64encode(f"u1:{offset}".encode()).decode().rstrip("=")


def decode_offset(cursor: str) -> int:
    try:
        version, _, value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        offset = int(value)
        if version != "u1" or not 0 < offset <= MAX_OFFSET:
            raise ValueError
        return offset
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(["query", "cursor"], "not a cursor from an earlier page's `next`") from None


@router.get("/api/v1/urls", response_model=UrlsPage, responses=NOT_FOUND, tags=["urls"])
async def list_url_page(
    request: Request,
    state: Annotated[UrlState | None, Query(description="ok, slow, failing or pending.")] = None,
    changed_since: Annotated[AgeQ, Query(
        description="Only URLs whose state changed since: an age or an ISO 8601 time.")] = None,
    batch: Annotated[TextQ, Query(description="Only URLs with a job in this batch (name: its latest; or id).")] = None,
    contains: Annotated[TextQ, Query(description="Only URLs containing this text.")] = None,
    window: Annotated[str, Query(min_length=1, max_length=64,
                                 description="Checks, uptime and percentiles over this age.")] = DEFAULT_WINDOW,
    sort: Annotated[Sort,
                    Query(description="state (failing first), url, latency (slowest last check first) or since (latest "
                                      "change first).")] = "state",
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="URLs per page.")] = 100,
    cursor: Annotated[str | None, Query(min_length=1, max_length=100,
                                        description="`next` of the previous page.")] = None,
    region: RegionQ = None,
) -> Any:
    """One object per URL, as `runner urls --format json`, a page at a time."""
    changed = _when("changed_since", changed_since)
    start = _window(window)
    offset = decode_offset(cursor) if cursor else 0
    store = runtime(request).store

    def read() -> dict[str, Any]:
        batch_ids = (_batch(store, batch, "batch"),) if batch is not None else None
        flt = UrlFilter(state=state, changed_since=changed, batch_ids=batch_ids, text=contains)
        views = list_urls(store, flt, since=start, sort=sort, limit=limit + 1, region=region, offset=offset)
        more = len(views) > limit
        return {"urls": [url_object(v) for v in views[:limit]],
                "next": encode_offset(offset + limit) if more and offset + limit <= MAX_OFFSET else None}

    return await run_in_threadpool(read)


@router.get("/api/v1/urls/summary", response_model=UrlSummary, responses=ERRORS, tags=["urls"])
async def url_summary(request: Request) -> Any:
    """How many URLs are ok, slow, failing and pending, and the newest batch."""
    store = runtime(request).store

    def read() -> dict[str, Any]:
        counts = state_counts(store)
        latest = recent_batches(store, 1)
        last = {"id": latest[0].id, "name": latest[0].name,
                "created_at": iso(latest[0].created_at) or ""} if latest else None
        return {**counts, "total": sum(counts.values()), "last_batch": last}

    return await run_in_threadpool(read)


@router.get("/api/v1/urls/history", response_model=HistoryOut, responses=NOT_FOUND, tags=["urls"])
async def url_history(
    request: Request,
    url: Annotated[str | None, Query(min_length=1, max_length=MAX_URL_LENGTH,
                                     description="The URL, as submitted ('example.com' means https://example.com/). "
                                                 "Give exactly one of `url` and `id`.")] = None,
    url_id: Annotated[int | None, Query(alias="id", ge=1, le=MAX_ID,
                                    description="The URL's id (`id` in `/api/v1/urls`, `url_id` in "
                                                "`/api/v1/changes`): the page's way to a URL holding a password, "
                                                "which it knows only masked. Give exactly one of `url` and `id`.")
              ] = None,
    since: Annotated[AgeQ, Query(
        description="Changes and checks since (also the window of the figures; default 30d).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="At most this many recent checks and changes.")] = 20,
    region: RegionQ = None,
) -> Any:
    """One URL's story, as `runner history --format json`: its state and since when, its
    changes and its recent checks, newest first. Give exactly one of `url` and `id`."""
    from runner.jobs.urls import normalise

    if (url is None) == (url_id is None):
        raise invalid(["query", "id" if url is not None else "url"], "give exactly one of `url` and `id`")
    start = _when("since", since)
    normalised = None
    if url is not None:
        try:
            normalised = normalise(url)
        except InvalidURL as exc:
            raise invalid(["query", "url"], str(exc)) from None
    store = runtime(request).store

    def read() -> dict[str, Any] | None:
        view = get_url(store, normalised, since=start or parse_window(DEFAULT_WINDOW), region=region, url_id=url_id)
        if view is None or view.last_job_id is None:
            return None
        changes = url_changes(store, view, since=start, limit=limit)
        recent = recent_checks(store, view.id, since=start, limit=limit, region=region)
        return history_object(view, changes, recent)

    found = await run_in_threadpool(read)
    if found is None:
        raise HTTPException(404, f"{mask_url(normalised)} was never checked" if normalised is not None
                            else f"id: no URL {url_id} (or it was never checked)")
    return found


@router.get("/api/v1/changes", response_model=ChangesOut, responses=NOT_FOUND, tags=["urls"])
async def list_changes(
    request: Request,
    since: Annotated[AgeQ, Query(description="URLs checked since then, against their check before.")] = None,
    batch: Annotated[TextQ,
                     Query(description="Each URL of this batch (name: its latest; or id) against its check just before "
                                       "it.")] = None,
    against: Annotated[TextQ,
                       Query(description="With `batch`: against each URL's check in this batch instead.")] = None,
    slower: Annotated[str, Query(min_length=1, max_length=20,
                                 description="slower: ok both times and at least this factor of the earlier time (and "
                                             "100 ms more).")] = "2x",
    limit: Annotated[int, Query(ge=1, le=10_000,
                                description="At most this many changes listed (counts cover all).")] = 1000,
) -> Any:
    """What changed, as `runner changes --format json`: new failures, recoveries, still
    failing, new, gone, slower, changed. Give `since` or `batch`."""
    if (since is None) == (batch is None):
        raise invalid(["query", "since" if since is not None else "batch"], "give either `since` or `batch`")
    if against is not None and batch is None:
        raise invalid(["query", "against"], "`against` needs `batch`")
    start = _when("since", since)
    try:
        factor = parse_slower(slower)
    except ValueError as exc:
        raise invalid(["query", "slower"], str(exc)) from None
    store = runtime(request).store

    def read() -> dict[str, Any]:
        batch_id = _batch(store, batch, "batch") if batch is not None else None
        if against is not None:
            _batch(store, against, "against")
        result = compare(store, batch=str(batch_id) if batch_id is not None else None, against=against,
                         since=start, slower=factor)
        ref = None
        if batch_id is not None:
            from db.feed import get_batch

            found = get_batch(store, batch_id)
            ref = {"id": batch_id, "name": found.name if found else str(batch)}
        return {"changes": [diff_object(d) for d in result.diffs[:limit]], "counts": change_counts(result.diffs),
                "batch": ref}

    return await run_in_threadpool(read)
