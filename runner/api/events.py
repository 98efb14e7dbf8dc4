"""``GET /api/v1/events``: each result as it is committed, as Server-Sent Events.

One thread per process listens for the store's changes (LISTEN/NOTIFY on PostgreSQL,
a look every ``event_poll`` seconds on SQLite) and wakes every open stream; each stream
then reads the results stored after the last one it saw (``db.feed``), filtered like the
job list. Each event's ``id`` is the result's ``seq``: a client that reconnects with
``Last-Event-ID`` gets what it missed.

Hazard: PostgreSQL hands out ``seq`` at insert, and two writers may commit crosswise
(seq 11 visible before seq 10). A stream therefore keeps looking below the highest seq it
has seen for ``HOLD`` seconds, so a late commit is still sent (ids may then arrive out of
order; delivery is at least once, by job id).

Bounds: a stream reads the backlog ``PAGE`` results at a time and sends each page before it
reads the next (the send waits while the client is slow), so its memory does not grow with
what it replays; the rows are turned into text off the event loop. The token is the
stream's lifetime: every ``TOKEN_CHECK`` seconds it is looked up again, and a revoked one
ends the stream.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.concurrency import run_in_threadpool

from db import JobFilter, Store, StoreUnavailable
from db.feed import latest_seq, results_by_seq, seqs_after
from db.regional import region_results
from runner.api.change_events import ChangeTail
from runner.jobs.report import to_row

HOLD = 2.0  # seconds a stream keeps looking below the newest seq it saw
PAGE = 100  # results read (and sent) per look: a stream's memory is one page
READERS = 2  # looks (a page read and rendered) at the same time, per process
TOKEN_CHECK = 2.0  # seconds between looks at whether the stream's token is still valid
KEEPALIVE = 15.0  # seconds between comments on an idle stream (proxies close silent ones)


class Feed:
    """Wakes every stream of this process when the store says something changed."""

    def __init__(self, store: Store, *, poll: float) -> None:
        self.store = store
        self.poll = poll
        self.waiters: set[asyncio.Event] = set()
        self.open_streams = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Looks (pages read and rendered) at once, over all streams: a hundred threads doing
        # it together would queue the event loop behind them for the GIL (/healthz waits).
        self.readers = asyncio.Semaphore(READERS)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._listen, name="urltester-api-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _listen(self) -> None:
        listener = None
        while not self._stop.is_set():
            try:
                if listener is None:
                    listener = self.store.listener()
                if listener.wait(self.poll if self.store.kind == "sqlite" else 1.0):
                    assert self._loop is not None
                    self._loop.call_soon_threadsafe(self._wake)
            except StoreUnavailable:
                listener = None
                self._stop.wait(1.0)  # streams keep polling meanwhile (every second)
        if listener is not None:
            listener.close()

    def _wake(self) -> None:
        for event in self.waiters:
            event.set()


def _look(store: Store, floor: int, seen: set[int], flt: JobFilter) -> tuple[list[int], bool, list[str]]:
    """One look, in a thread: the seqs to send next, whether more are waiting behind them
    (a backlog: page on at once), and their events as SSE text. One hop off the loop per
    page, under ``Feed.readers``: the database reads of a hundred streams are not a hundred
    threads holding the GIL at once while the loop waits for it (/healthz p99)."""
    new = seqs_after(store, max(seen, default=floor), limit=PAGE)
    behind = len(new) >= PAGE  # replaying a backlog: page on from the newest seen
    if not behind:  # caught up: look below the newest seen too, for late commits
        got = seqs_after(store, floor, limit=len(seen) + PAGE)
        new = [s for s in got if s not in seen][:PAGE]
    return new, behind, _page(store, new, flt) if new else []


def _page(store: Store, seqs: list[int], flt: JobFilter) -> list[str]:
    """One page of events as SSE text (in a thread: the loop only sends)."""
    rows = results_by_seq(store, seqs, flt) if seqs else []
    found = region_results(store, [view.id for _, view in rows]) if rows else {}
    return [f"id: {seq}\nevent: result\n"
            f"data: {json.dumps(to_row(view, found.get(view.id, [])), ensure_ascii=False, default=str)}\n\n"
            for seq, view in rows]


async def stream(feed: Feed, flt: JobFilter, last_id: int | None, disconnected: Callable[[], Awaitable[bool]],
                 on_event: Callable[[], None],
                 token_valid: Callable[[], bool] = lambda: True) -> AsyncIterator[str]:
    """The SSE text of one stream, until the client goes away or its token is revoked."""
    store = feed.store
    woken = asyncio.Event()
    feed.waiters.add(woken)
    try:
        floor = last_id if last_id is not None else await run_in_threadpool(latest_seq, store)
        changes = ChangeTail(store, flt)  # event: change (runner/api/change_events.py)
        await changes.start()
        seen: set[int] = set()
        history: deque[tuple[float, int]] = deque()
        quiet_since = checked = changes_looked = time.monotonic()
        yield "retry: 2000\n\n"
        while not await disconnected():
            if time.monotonic() - checked >= TOKEN_CHECK:
                try:
                    if not await run_in_threadpool(token_valid):
                        return  # revoked: the client's reconnection gets 401
                except StoreUnavailable:
                    pass  # cannot tell now; the next look will
                checked = time.monotonic()
            woken.clear()
            try:
                async with feed.readers:
                    new, behind, page = await run_in_threadpool(_look, store, floor, seen, flt)
            except StoreUnavailable:
                behind, new, page = False, [], []  # the database is away: say nothing, look again shortly
            if page:  # one write a page: the loop serves other requests between pages, not between events
                for _ in page:
                    on_event()
                yield "".join(page)
                quiet_since = time.monotonic()
            # Changes are looked at once a second while a backlog is replayed, not once a page:
            # a hundred replaying streams made a database read each per page besides their own.
            if not behind or time.monotonic() - changes_looked >= 1.0:
                changes_looked = time.monotonic()
                for chunk in await changes.events():
                    on_event()
                    yield chunk
                    quiet_since = time.monotonic()
            seen.update(new)
            now = time.monotonic()
            history.append((now, max(seen, default=floor)))
            while history and history[0][0] <= now - HOLD:
                floor = max(floor, history.popleft()[1])
            seen = {s for s in seen if s > floor}
            if behind or len(new) >= PAGE:
                continue  # more to send: the next page at once
            if now - quiet_since >= KEEPALIVE:
                yield ": keepalive\n\n"
                quiet_since = now
            try:
                await asyncio.wait_for(woken.wait(), timeout=1.0)
            except TimeoutError:
                pass
    finally:
        feed.waiters.discard(woken)
