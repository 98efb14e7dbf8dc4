"""``event: change`` on ``GET /api/v1/events``: each URL state change (a row of
``url_changes``) as it is committed, beside the stream's ``result`` events.

A change is written in the transaction that records its result, so the wake-up that
brings a result brings its change. A stream starts at the newest change when it opens
(change events carry no ``id``: ``Last-Event-ID`` stays the results'; a page that
reconnects reads ``/api/v1/changes`` for what it missed). Like results, ids are handed
out at insert and may commit crosswise, so the tail keeps looking below the highest id
it has seen for ``HOLD`` seconds. Filtered by the stream's ``text`` and ``batch``.
"""

from __future__ import annotations

import json
import time
from collections import deque

from starlette.concurrency import run_in_threadpool

from db import JobFilter, Store, StoreUnavailable
from db.urls import changes_after, latest_change_id
from runner.jobs.history import change_event_object

HOLD = 2.0  # seconds the tail keeps looking below the newest id it saw
BATCH = 2000  # ids read per look


class ChangeTail:
    """One stream's position in ``url_changes``."""

    def __init__(self, store: Store, flt: JobFilter) -> None:
        self.store = store
        self.flt = flt
        self.floor: int | None = None
        self.seen: set[int] = set()
        self.history: deque[tuple[float, int]] = deque()

    async def start(self) -> None:
        try:
            self.floor = await run_in_threadpool(latest_change_id, self.store)
        except StoreUnavailable:
            self.floor = None  # looked for again at the next look

    async def events(self) -> list[str]:
        """The SSE text of the changes committed since the last look."""
        if self.floor is None:
            await self.start()
            return []
        try:
            ids, found = await run_in_threadpool(changes_after, self.store, self.floor, limit=BATCH,
                                                 text=self.flt.text, batch=self.flt.batch)
        except StoreUnavailable:
            return []
        out = [f"event: change\ndata: {json.dumps(change_event_object(c), ensure_ascii=False, default=str)}\n\n"
               for i, c in found if i not in self.seen]
        self.seen.update(ids)
        now = time.monotonic()
        self.history.append((now, max(self.seen, default=self.floor)))
        while self.history and self.history[0][0] <= now - HOLD:
            self.floor = max(self.floor, self.history.popleft()[1])
        self.seen = {i for i in self.seen if i > self.floor}
        return out
