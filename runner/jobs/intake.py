"""The one way jobs enter: validate, record, then publish, for one URL or a million.

``runner submit``, the TUI's input and re-test, the API and ``runner import`` all go
through here; the :class:`~runner.jobs.runtime.Runtime` builds one :class:`Intake` with its
store and app and hands the work on. The path goes one way: Runtime → Intake → store and
taskq, never back.

1. :class:`Validator` turns each URL (and its own options, merged over the batch's) into
   a job: the URL normalised, the options parsed and kept as JSON text. Duplicates (same
   URL and options) are dropped unless asked to keep them, remembered as 8-byte digests.
2. A batch's :class:`Feed` takes the jobs in chunks: one thread records each chunk in one
   transaction (``COPY`` on PostgreSQL for large chunks, :meth:`db.Store.insert_jobs`),
   ``publishers`` others publish the recorded chunks with publisher confirms
   (:meth:`Intake.publish`, each on a broker connection of its own) and mark them
   published. ``put`` blocks when the stages are behind: flat memory for any size. What
   fits in the first chunk (a submit, an API call) is recorded and published in the
   caller's thread.
3. :meth:`Intake.republish` sends again what may never have reached the broker:
   ``runner requeue --stale``, a re-run import's unconfirmed jobs, the TUI once the broker
   is back.

Failure semantics: the database is the source of truth and a job row always exists
before its message. If RabbitMQ fails, every later chunk is still recorded and marked
unpublished (``publish_error``, by :meth:`Intake.mark_unsent` only); ``runner requeue
--stale 0s`` publishes them later. If the database fails, the feed stops: what was
recorded stays (and is published).
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from db import NewJob, Store, utcnow
from db.regions import Placement
from runner.check.options import OPTION_ALIASES, CheckOptions, parse_options
from runner.errors import BrokerError, ConfigError, OptionError, UnsentJobs
from runner.jobs.regions import DEFAULT_REGION, PLACEMENT_KEYS, queue_for, split_placement
from runner.jobs.tasks import CHECK_TASK
from runner.jobs.urls import normalise
from runner.taskq.app import DEFAULT_PACK, DELAY_BUCKETS, App, Call, Raw, TaskHandle, delay_bucket

CHUNK = 5000       # jobs recorded per transaction and published per confirm round
FIRST_CHUNK = 500  # ... except the first: workers get going while the rest is recorded
PUBLISHERS = 2     # publishing threads, each with its own RabbitMQ connection


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
    """The one way jobs enter, for one runtime: record, then publish, with the store and the
    app it is given (:class:`~runner.jobs.runtime.Runtime` builds it once).

    :meth:`enqueue` takes a submit's jobs, :meth:`feed` an import's stream of chunks;
    :meth:`publish` is the one way check calls are sent, :meth:`republish` the one way jobs
    whose message may be missing are sent again.
    """

    def __init__(self, store: Store, app: App, *, queue: str, no_worker_after: float,
                 pace: Callable[[Sequence[str]], list[tuple[float, float] | None]] | None = None) -> None:
        """``queue``: the base queue name (each region's is ``queue@region``);
        ``no_worker_after``: seconds before a named region without a live worker is no_worker;
        ``pace``: :meth:`runner.jobs.pacing.Pacer.ahead` when the broker can hold calls back:
        a call of a rate-limited host is published with its slot, held back until about then."""
        self.store = store
        self.app = app
        self.queue = queue
        self.no_worker_after = no_worker_after
        self.pace = pace
        self._raws: dict[str, Raw] = {}

    def enqueue(self, batch_id: int | None, jobs: Iterable[NewJob]) -> list[int]:
        """Record then publish validated jobs (options as JSON text); returns their ids.

        If the broker fails, the remaining jobs are still recorded (marked unsent, like
        the failed ones) before UnsentJobs is raised: everything accepted is kept.
        """
        counts = IntakeCounts()
        jobs = jobs if isinstance(jobs, list) else list(jobs)
        feed = self.feed(batch_id, counts, keep_ids=True, inline=len(jobs) <= FIRST_CHUNK)
        try:
            for chunk in chunks(jobs):
                feed.put(chunk)
        finally:
            feed.close()
        if counts.broker_error is not None:
            raise UnsentJobs(counts.broker_error, recorded=counts.recorded)
        return counts.job_ids

    def feed(self, batch_id: int | None, counts: Any, *, publishers: int = PUBLISHERS, keep_ids: bool = False,
             inline: bool = False) -> Feed:
        """A batch's way in for chunks put one after another (see :class:`Feed`)."""
        return Feed(self, batch_id, counts, publishers=publishers, keep_ids=keep_ids, inline=inline)

    def publish(self, jobs: Sequence[tuple[int, str, dict[str, Any] | Raw]], *,
                requeued: bool = False) -> list[TaskHandle]:
        """Publish check calls for recorded jobs, the one way calls are sent: one per job and
        region, to each region's queue, then mark the jobs published; on failure mark them
        unsent and raise BrokerError."""
        if not jobs:
            return []
        by_region: dict[str, list[Call]] = {}
        regional: list[int] = []
        for job_id, url, options in jobs:
            placement = Placement.of(options.text if isinstance(options, Raw) else options)
            if placement.named:
                regional.append(job_id)
            for region in placement.regions:
                kwargs = {} if region == DEFAULT_REGION else {"region": region}
                by_region.setdefault(region, []).append(Call(CHECK_TASK, (job_id, url, options), kwargs))
        ids = [job_id for job_id, _, _ in jobs]
        headers = {"x-urltester-requeued": True} if requeued else None
        try:
            handles: list[TaskHandle] = []
            for (region, delay), calls in self._held_back(by_region).items():
                handles += self.app.enqueue(calls, pack=DEFAULT_PACK if len(calls) > 1 else 1, headers=headers,
                                            queue=queue_for(self.queue, region), delay=delay)
        except (BrokerError, ConfigError) as exc:  # ConfigError: RabbitMQ refuses these settings
            self.mark_unsent(ids, str(exc))
            raise
        self._mark_published(ids, regional)
        return handles

    def _held_back(self, by_region: dict[str, list[Call]]) -> dict[tuple[str, float], list[Call]]:
        """The calls by (region, how long the broker holds them back): those of rate-limited
        hosts carry their slot and wait in a delay queue until about then (``pace``)."""
        if self.pace is None:
            return {(region, 0.0): calls for region, calls in by_region.items()}
        every = [(region, call) for region, calls in by_region.items() for call in calls]
        ahead = self.pace([call.args[1] for _, call in every])
        if not any(ahead):
            return {(region, 0.0): calls for region, calls in by_region.items()}
        out: dict[tuple[str, float], list[Call]] = {}
        for (region, call), pace in zip(every, ahead, strict=True):
            delay = 0.0
            if pace is not None:
                slot, wait = pace
                call.kwargs["pace"] = {"slot": slot}
                delay = delay_bucket(wait) if wait >= DELAY_BUCKETS[0] else 0.0
            out.setdefault((region, delay), []).append(call)
        return out

    def mark_unsent(self, ids: Sequence[int], error: str) -> None:
        """The broker did not confirm these jobs' messages: ``republish`` finds them."""
        self.store.mark_publish_failed(ids, f"not published: {error}")

    def republish(self, *, older_than: timedelta | None = None, batch_id: int | None = None,
                  limit: int | None = None) -> int:
        """Publish again, a page at a time, jobs whose message may be missing; returns how many.

        ``older_than``: every job not done whose message is older (``runner requeue
        --stale``; safe while workers run, as a duplicate message never makes a second
        result). ``batch_id``: that batch's jobs never confirmed (a re-run import). Neither:
        the jobs whose publish failed (the TUI, once the broker is back). ``limit``: at most
        that many, in one page. The messages say they are requeued: a worker first asks
        whether the job already has its result.
        """
        total = 0
        after = 0
        now = utcnow()
        while limit is None or total < limit:
            page = CHUNK if limit is None else min(CHUNK, limit - total)
            if older_than is not None:
                views = self.store.stale_jobs(older_than, now=now, after_id=after, limit=page)
            else:
                views = self.store.unsent_jobs(batch_id=batch_id, after_id=after, limit=page)
            if views:
                self.publish([(v.id, v.url, v.options) for v in views], requeued=True)
                total += len(views)
                after = views[-1].id
            if len(views) < page:
                break
        return total

    def _publish(self, ids: list[int], chunk: list[NewJob]) -> None:
        """Publish a recorded chunk (a feed's; BrokerError after marking them unsent)."""
        raws = self._raws
        jobs = []
        for i, job in zip(ids, chunk, strict=True):
            url, opts = job.url, job.options_json()  # text already: the intake validated it
            raw = raws.get(opts)  # a batch has few distinct option sets: one Raw each
            if raw is None:
                if len(raws) >= 4096:
                    raws.clear()
                raw = raws[opts] = Raw(opts)
            jobs.append((i, url, raw))
        self.publish(jobs)

    def _mark_published(self, ids: Sequence[int], regional: Sequence[int] = ()) -> None:
        """Mark jobs published; those that named regions get their no-worker bound."""
        named = set(regional)
        plain = [i for i in ids if i not in named]
        if plain:
            self.store.mark_published(plain)
        if named:
            bound = utcnow() + timedelta(seconds=self.no_worker_after)
            self.store.mark_published([i for i in ids if i in named], no_worker_at=bound)


class Feed:
    """One batch's chunks on their way in: recorded in one thread, published in others.

    ``put`` blocks when the stages are behind (bounded queues: flat memory). The first
    database error stops the feed (``put`` raises it); a broker error makes every later
    chunk be recorded and marked unpublished instead of waiting for RabbitMQ again.
    ``counts`` (any object with :class:`IntakeCounts`' fields) is updated as chunks go.
    """

    def __init__(self, intake: Intake, batch_id: int | None, counts: Any, *, publishers: int = PUBLISHERS,
                 keep_ids: bool = False, inline: bool = False) -> None:
        """``inline``: record and publish in the caller's thread, for what fits in one
        chunk (an API request, a submit): there is nothing to overlap, and three threads
        started and joined cost a 1-URL submit about a third of its time."""
        self.intake = intake
        self.store = intake.store
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
        self.inline = inline
        self._threads: list[threading.Thread] = []
        self._switch = sys.getswitchinterval()
        if inline:
            return
        # The recording and publishing threads wait on sockets; with the GIL's default 5 ms
        # switch interval each of their many small waits ends in a 5 ms queue behind the
        # validating thread (measured: recording 35% slower). 1 ms for the feed's life.
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
                self._send(*self._record(chunk))
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
                self._send(*item)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._fail(exc)
            while self._publish_q.get() is not None:  # let the recorder finish its puts
                pass

    def _send(self, ids: list[int], chunk: list[NewJob]) -> None:
        """Publish a recorded chunk through the intake, counting it; after a broker error,
        mark it unsent instead of waiting for RabbitMQ again."""
        error = self.counts.broker_error
        if error is None:
            try:
                self.intake._publish(ids, chunk)
                with self._lock:
                    self.counts.published += len(ids)
                return
            except BrokerError as exc:
                with self._lock:
                    self.counts.broker_error = self.counts.broker_error or str(exc)
                    self.counts.unpublished += len(ids)
                return  # the intake marked them
        self.intake.mark_unsent(ids, error)
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
