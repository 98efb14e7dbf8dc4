"""The one way jobs enter: validate, record, then publish, for one URL or a million.

``runner submit``, the TUI's input and re-test, and ``runner import`` all go through here
(via :class:`~runner.jobs.runtime.Runtime`):

1. :class:`Validator` turns each URL (and its own options, merged over the batch's) into
   a job: the URL normalised, the options parsed and kept as JSON text. Duplicates (same
   URL and options) are dropped unless asked to keep them, remembered as 8-byte digests.
2. :class:`Intake` takes the jobs in chunks: one thread records each chunk in one
   transaction (``COPY`` on PostgreSQL for large chunks, :meth:`db.Store.insert_jobs`),
   ``publishers`` others publish the recorded chunks with publisher confirms
   (:meth:`Runtime.publish`, each on a broker connection of its own) and mark them
   published. ``put`` blocks when the stages are behind: flat memory for any size.

Failure semantics: the database is the source of truth and a job row always exists
before its message. If RabbitMQ fails, every later chunk is still recorded and marked
unpublished (``publish_error``); ``runner requeue --stale 0s`` publishes them later. If the
database fails, the intake stops: what was recorded stays (and is published).
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from db import NewJob, Store
from runner.check.options import OPTION_ALIASES, CheckOptions, parse_options
from runner.errors import BrokerError, ConfigError, OptionError
from runner.jobs.regions import PLACEMENT_KEYS, split_placement
from runner.jobs.urls import normalise
from runner.taskq.app import Raw

CHUNK = 5000       # jobs recorded per transaction and published per confirm round
FIRST_CHUNK = 500  # ... except the first: workers get going while the rest is recorded
PUBLISHERS = 2     # publishing threads, each with its own RabbitMQ connection


class Publisher(Protocol):
    """What an intake needs (a :class:`~runner.jobs.runtime.Runtime` has it)."""

    store: Store
    broker: Any

    def publish(self, jobs: Any, *, requeued: bool = False) -> list[Any]: ...


@dataclass
class IntakeCounts:
    """How far a batch's jobs got: recorded, published, or recorded but not published."""

    recorded: int = 0
    published: int = 0
    unpublished: int = 0     # recorded, publish failed: marked for `runner requeue`
    broker_error: str | None = None
    job_ids: list[int] = field(default_factory=list)  # kept only when asked (not for imports)


class DigestSet:
    """A set of 64-bit digests in one flat array: 8 to 16 bytes per distinct line.

    A Python set of digests costs about 90 bytes per entry (152 MiB of peak memory for a
    million-line import); open addressing in an ``array('Q')`` keeps the same million in
    16 MiB. Two different lines share a 64-bit digest with probability about n²/2⁶⁵
    (3·10⁻⁸ for a million lines): then the second would be counted a duplicate.
    """

    def __init__(self, capacity: int = 1 << 12) -> None:
        self._table = array("Q", bytes(8 * capacity))
        self._mask = capacity - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, value: int) -> bool:
        """Add ``value``; True if it was not there before."""
        value = value or 1  # 0 marks an empty slot
        table, mask = self._table, self._mask
        i = value & mask
        while True:
            found = table[i]
            if found == 0:
                table[i] = value
                self._count += 1
                if self._count * 10 > (mask + 1) * 7:  # keep the load under 0.7
                    self._grow()
                return True
            if found == value:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._table
        self._table = array("Q", bytes(16 * len(old)))
        self._mask = 2 * len(old) - 1
        table, mask = self._table, self._mask
        for value in old:
            if value:
                i = value & mask
                while table[i]:
                    i = (i + 1) & mask
                table[i] = value


class Validator:
    """Turns records into ``(url, options JSON)`` jobs, with per-file defaults and dedup."""

    def __init__(self, defaults: CheckOptions, *, keep_duplicates: bool = False,
                 placement: Mapping[str, Any] | None = None,
                 place: Callable[[Any, Any], dict[str, Any]] | None = None) -> None:
        """``placement``: the batch-wide regions/quorum keys (resolved); ``place(regions,
        quorum)`` validates and resolves a line's own (``Runtime.placement``)."""
        self.placement = dict(placement or {})
        self.place = place
        self.defaults_raw = {**defaults.to_json(), **self.placement}
        self.default_json = _options_json(defaults, self.placement)
        self.keep_duplicates = keep_duplicates
        self.seen = DigestSet()
        self._cache: dict[str, str] = {}

    def job(self, url_text: str, raw: Mapping[str, Any] | None) -> NewJob | None:
        """The job, or None for a duplicate; InvalidInput (with a short reason) when bad."""
        url = normalise(url_text)
        opts = self.default_json if not raw else self._options(raw)
        if not self.keep_duplicates:
            digest = hashlib.blake2b(f"{url}\n{opts}".encode(), digest_size=8).digest()
            if not self.seen.add(int.from_bytes(digest, "little")):
                return None
        return NewJob(url, opts)

    def _options(self, raw: Mapping[str, Any]) -> str:
        key = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        found = self._cache.get(key)
        if found is not None:
            return found
        merged = {**self.defaults_raw}
        own_placement = False
        for name, value in raw.items():
            if value is None or value == [] or (isinstance(value, str) and not value.strip()):
                continue  # unset on this line: the file-wide default stands
            merged[OPTION_ALIASES.get(name, name)] = value
            own_placement = own_placement or name in PLACEMENT_KEYS
        rest, regions, quorum = split_placement(merged)
        try:
            placement = self.placement
            if own_placement:
                if self.place is None:
                    raise OptionError("regions are not taken here", where="regions")
                placement = self.place(regions, quorum)
            opts = _options_json(parse_options(rest), placement)
        except OptionError as exc:
            raise OptionError(f"{exc.where}: {exc.message}" if exc.where else exc.message) from None
        except ConfigError as exc:  # a line's regions the fleet cannot serve: refuse the line
            raise OptionError(str(exc)) from None
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[key] = opts
        return opts


def _options_json(options: CheckOptions, placement: Mapping[str, Any] | None = None) -> str:
    return json.dumps({**options.to_json(), **(placement or {})}, sort_keys=True, separators=(",", ":"))


class Intake:
    """One batch's way in: records chunks of jobs in one thread, publishes them in others.

    ``put`` blocks when the stages are behind (bounded queues: flat memory). The first
    database error stops the intake (``put`` raises it); a broker error makes every later
    chunk be recorded and marked unpublished instead of waiting for RabbitMQ again.
    ``counts`` (any object with :class:`IntakeCounts`' fields) is updated as chunks go.
    """

    def __init__(self, runtime: Publisher, batch_id: int | None, counts: Any, *, publishers: int = PUBLISHERS,
                 keep_ids: bool = False, inline: bool = False) -> None:
        """``inline``: record and publish in the caller's thread, for what fits in one
        chunk (an API request, a submit): there is nothing to overlap, and three threads
        started and joined cost a 1-URL submit about a third of its time."""
        self.rt = runtime
        self.store = runtime.store
        self.batch_id = batch_id
        self.counts = counts
        self.keep_ids = keep_ids
        self.publishers = max(1, publishers)
        self._record_q: queue.Queue[list[NewJob] | None] = queue.Queue(maxsize=2)
        self._publish_q: queue.Queue[tuple[list[int], list[NewJob]] | None] = queue.Queue(
            maxsize=self.publishers + 1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._raws: dict[str, Raw] = {}
        self.inline = inline
        self._threads: list[threading.Thread] = []
        self._switch = sys.getswitchinterval()
        if inline:
            return
        # The recording and publishing threads wait on sockets; with the GIL's default 5 ms
        # switch interval each of their many small waits ends in a 5 ms queue behind the
        # validating thread (measured: recording 35% slower). 1 ms for the intake's life.
        sys.setswitchinterval(min(self._switch, 0.001))
        self._threads = [threading.Thread(target=self._record_loop, name="intake-record", daemon=True)]
        self._threads += [threading.Thread(target=self._publish_loop, name=f"intake-publish-{i}", daemon=True)
                          for i in range(self.publishers)]
        for thread in self._threads:
            thread.start()

    def put(self, chunk: list[NewJob]) -> None:
        """Queue ``(url, options JSON)`` jobs to be recorded then published."""
        if self.inline:
            if self.error is not None:
                raise self.error
            try:
                self._publish(*self._record(chunk))
            except BaseException as exc:
                self._fail(exc)
                raise
            return
        while True:
            if self._stop.is_set():
                raise self.error or RuntimeError("intake stopped")
            try:
                self._record_q.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait for every chunk put so far to be recorded and published (or marked)."""
        if self.inline:
            return
        while not self._stop.is_set():
            try:
                self._record_q.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        for thread in self._threads:
            thread.join()
        sys.setswitchinterval(self._switch)
        if self.error is not None:
            raise self.error

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self._stop.set()

    def _record_loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    chunk = self._record_q.get(timeout=0.2)
                except queue.Empty:
                    continue
                if chunk is None:
                    break
                self._publish_q.put(self._record(chunk))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._fail(exc)
        finally:
            for _ in range(self.publishers):
                self._publish_q.put(None)

    def _record(self, chunk: list[NewJob]) -> tuple[list[int], list[NewJob]]:
        ids = self.store.insert_jobs(self.batch_id, chunk)
        with self._lock:
            self.counts.recorded += len(ids)
            if self.keep_ids:
                self.counts.job_ids.extend(ids)
        return ids, chunk

    def _publish_loop(self) -> None:
        try:
            while True:
                item = self._publish_q.get()
                if item is None:
                    return
                if self._stop.is_set():
                    continue  # the database failed: what is recorded is found by requeue --stale
                self._publish(*item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._fail(exc)
            while self._publish_q.get() is not None:  # let the recorder finish its puts
                pass

    def _publish(self, ids: list[int], chunk: list[NewJob]) -> None:
        raws = self._raws
        jobs = []
        for i, (url, opts) in zip(ids, chunk, strict=True):
            raw = raws.get(opts)  # a batch has few distinct option sets: one Raw each
            if raw is None:
                raw = Raw(opts)
                if len(raws) < 4096:
                    raws[opts] = raw
            jobs.append((i, url, raw))
        error = self.counts.broker_error
        if error is None:
            try:
                self.rt.publish(jobs)
                with self._lock:
                    self.counts.published += len(ids)
                return
            except BrokerError as exc:
                with self._lock:
                    self.counts.broker_error = self.counts.broker_error or str(exc)
                    self.counts.unpublished += len(ids)
                return  # Runtime.publish marked them
        self.store.mark_publish_failed(ids, f"not published: {error}")
        with self._lock:
            self.counts.unpublished += len(ids)


def chunks(jobs: Iterable[NewJob]) -> Iterator[list[NewJob]]:
    """``FIRST_CHUNK`` jobs, then ``CHUNK`` at a time: workers start on the first while
    the rest is recorded."""
    size = FIRST_CHUNK
    chunk: list[NewJob] = []
    for job in jobs:
        chunk.append(job)
        if len(chunk) >= size:
            yield chunk
            chunk, size = [], CHUNK
    if chunk:
        yield chunk
