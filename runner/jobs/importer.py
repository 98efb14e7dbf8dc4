"""Batch imports: a file of URLs (text, CSV or JSON Lines) validated, recorded and queued.

The flow, for a file of any size with flat memory:

1. Lines are read as bytes with a length cap (:data:`MAX_LINE_BYTES`): a huge line is
   skipped and reported without ever being held whole. Each line is decoded on its own,
   so an undecodable byte spoils one line, never the file.
2. Each record is validated (URL normalised, per-line options merged over the file-wide
   defaults and parsed). A bad record is reported as ``FILE:LINE: reason`` and the import
   goes on. Duplicates (same URL and options) are dropped, remembered as 8-byte digests
   in a flat table (:class:`DigestSet`).
3. Valid jobs go, ``CHUNK`` at a time, through a :class:`Pipeline`: one thread records a
   chunk in the database (``COPY`` on PostgreSQL, see :mod:`db.bulk`), others publish the
   recorded chunks with publisher confirms, each on a connection of its own, and mark them
   published. With ``strict`` the jobs are first spooled to a temporary file and queued
   only when no line was refused.

Failure semantics (what exit code 3 means): the database is the source of truth and a
job row always exists before its message. If RabbitMQ fails mid-import, the import keeps
*recording* the rest of the file and marks every job it could not publish
(``publish_error``); ``runner requeue --stale 0s`` (or re-running the import with the
same idempotency key) publishes them later. Nothing is rolled back and nothing is lost.
If the database fails, the import stops: jobs recorded so far stay (and are published);
re-running with the same ``--idempotency-key`` records only the rest, because a batch's
``size`` counts exactly the jobs recorded and the file's valid jobs come in file order.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import queue
import re
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from db import Batch, StoreError
from db.bulk import record_jobs, unpublished_jobs
from db.regions import job_regions
from runner.check.options import OPTION_ALIASES, OPTION_NAMES, CheckOptions, parse_options
from runner.errors import BrokerError, ConfigError, InvalidInput, OptionError
from runner.jobs.regions import DEFAULT_REGION, PLACEMENT_KEYS, queue_for, split_placement
from runner.jobs.tasks import CHECK_TASK
from runner.jobs.urls import MAX_URL_LENGTH, Rejected, normalise
from runner.taskq.app import DEFAULT_PACK, MESSAGE_VERSION, Call

FORMATS = ("text", "csv", "jsonl")
MAX_LINE_BYTES = 256 * 1024  # a longer line is refused without being read whole
CHUNK = 5000                 # jobs recorded per transaction and published per confirm round
PUBLISHERS = 2               # publishing threads, each with its own RabbitMQ connection
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
               ".txt": "text", ".list": "text", ".urls": "text"}
_COLUMNS = frozenset(OPTION_NAMES) | frozenset(OPTION_ALIASES) | frozenset(PLACEMENT_KEYS)


class ImportUsageError(InvalidInput):
    """The file as a whole cannot be imported (unreadable, no url column ...): exit 2."""


# ---------------------------------------------------------------------------- reading lines


@dataclass
class Source:
    """Where the lines come from: a file or stdin, read as bytes."""

    name: str
    stream: IO[bytes]
    size: int | None = None  # bytes, when known (for the progress bar)
    read: int = 0            # bytes read so far
    line_count: int = 0      # lines read so far

    @classmethod
    def open(cls, path: str, stdin: IO[bytes] | None = None) -> Source:
        if path == "-":
            return cls("<stdin>", stdin if stdin is not None else sys.stdin.buffer)
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed by Source.close
            size = os.fstat(stream.fileno()).st_size
        except OSError as exc:
            raise ImportUsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return cls(path, stream, size)

    def close(self) -> None:
        if self.name != "<stdin>":
            self.stream.close()

    def lines(self) -> Iterator[tuple[int, str | None, str | None]]:
        """``(line number, text with its line ending, None)`` or ``(number, None, reason)``."""
        readline = self.stream.readline
        number = 0
        while True:
            raw = readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            self.line_count = number
            self.read += len(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                length = len(raw)
                while True:  # skip the rest of the line, a piece at a time
                    more = readline(1 << 16)
                    length += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                self.read += length - len(raw)
                yield number, None, f"line of {length} bytes is longer than the limit of {MAX_LINE_BYTES // 1024} KiB"
                continue
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield number, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield number, None, f"undecodable bytes (not UTF-8) at byte {exc.start + 1}"


def detect_format(name: str, first: str | None) -> str:
    """The format from the file name's extension, else from the first meaningful line."""
    ext = os.path.splitext(name)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if first is None:
        return "text"
    line = first.strip()
    if line.startswith("{"):
        return "jsonl"
    if "," in line or line.lower().strip('"') == "url":
        cells = [c.strip().strip('"').lower() for c in next(csv.reader([line]), [])]
        if "url" in cells:
            return "csv"
    return "text"


# ---------------------------------------------------------------------------- records

# One parsed record: (line number, URL text, the line's own options or None).
Record = tuple[int, str, dict[str, Any] | None]
# Parsers yield either a Record or a refusal: (line number, reason, the text to show).
Refusal = tuple[int, str, str]


def _text_records(lines: Iterable[tuple[int, str | None, str | None]]) -> Iterator[Record | Refusal]:
    for number, text, error in lines:
        if error is not None:
            yield number, error, ""
            continue
        assert text is not None
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped, None


def _jsonl_records(lines: Iterable[tuple[int, str | None, str | None]]) -> Iterator[Record | Refusal]:
    for number, text, error in lines:
        if error is not None:
            yield number, error, ""
            continue
        assert text is not None
        stripped = text.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped)
        except ValueError as exc:
            yield number, f"not valid JSON ({exc})", stripped
            continue
        if not isinstance(obj, dict):
            yield number, "expected a JSON object with a \"url\" key", stripped
            continue
        url = obj.pop("url", None)
        if not isinstance(url, str):
            yield number, "no \"url\" key with a text value", stripped
            continue
        yield number, url, obj or None


def _csv_records(lines: Iterable[tuple[int, str | None, str | None]], name: str) -> Iterator[Record | Refusal]:
    """CSV with a header naming a ``url`` column and option columns. A quoted cell may span
    lines (several headers or conditions); a record is reported by its first line."""
    current = [0]
    spoiled: list[tuple[int, str]] = []

    def feed() -> Iterator[str]:
        for number, text, error in lines:
            current[0] = number
            if error is not None:
                spoiled.append((number, error))
                yield "\n"
                continue
            assert text is not None
            yield text if text.endswith("\n") else text + "\n"

    reader = csv.reader(feed())
    columns: list[str] | None = None
    while True:
        start = current[0] + 1
        row: list[str] | None = None
        problem = None
        try:
            row = next(reader)
        except StopIteration:
            pass
        except csv.Error as exc:
            problem = f"malformed CSV ({exc})"
        while spoiled:
            number, error = spoiled.pop(0)
            yield number, error, ""
        if problem is not None:
            yield start, problem, ""
            continue
        if row is None:
            break
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if columns is None:
            if row[0].lstrip().startswith("#"):
                continue  # a comment above the header
            columns = _csv_header(row, name, start)
            continue
        if len(row) != len(columns):
            yield start, f"{len(row)} fields, but the header has {len(columns)}", ",".join(row)
            continue
        url = ""
        options: dict[str, Any] = {}
        for column, cell in zip(columns, row, strict=True):
            if column == "url":
                url = cell
            elif cell.strip():
                options[column] = cell
        yield start, url, options or None


def _csv_header(row: list[str], name: str, number: int) -> list[str]:
    columns = [c.strip().lower() for c in row]
    if "url" not in columns:
        raise ImportUsageError(f"the CSV header has no 'url' column (found: {', '.join(row)})", f"{name}:{number}")
    for column in columns:
        if column != "url" and column not in _COLUMNS:
            raise ImportUsageError(
                f"unknown column {column!r} (known: url, {', '.join(OPTION_NAMES)})", f"{name}:{number}")
        if columns.count(column) > 1:
            raise ImportUsageError(f"column {column!r} appears twice", f"{name}:{number}")
    return columns


# ---------------------------------------------------------------------------- URLs, fast

# A URL already in the form normalise() returns: lowercase http(s) scheme and host, no
# userinfo, no fragment, no default port, printable ASCII. Such a URL is returned as it is,
# skipping urlsplit and IDNA (four times faster; tests/batch check it agrees with normalise).
_CANONICAL = re.compile(
    r"(https?)://((?:[a-z0-9_\-]{1,63}\.)*[a-z0-9_\-]{1,63})(?::([1-9][0-9]{0,4}))?"
    r"/[\x21\x22\x24-\x3e\x40-\x7e]*(?:\?[\x21\x22\x24-\x7e]+)?"
)


def fast_normalise(text: str) -> str:
    """The same as :func:`runner.jobs.urls.normalise`, faster for URLs already canonical."""
    m = _CANONICAL.fullmatch(text)
    if m is not None and len(text) <= MAX_URL_LENGTH and len(m.group(2)) <= 253:
        port = m.group(3)
        if port is None:
            return text
        value = int(port)
        if value <= 65535 and (m.group(1), value) not in (("http", 80), ("https", 443)):
            return text
    return normalise(text)


# ---------------------------------------------------------------------------- validating


@dataclass
class ImportReport:
    """What an import did, for the summary line and the exit code."""

    source: str
    format: str = "text"
    lines: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    already: int = 0        # valid jobs an earlier run with the same idempotency key recorded
    recorded: int = 0
    published: int = 0
    unpublished: int = 0    # recorded, publish failed: marked for `runner requeue`
    republished: int = 0    # an earlier run's unpublished jobs published now
    batch: Batch | None = None
    broker_error: str | None = None
    store_error: str | None = None
    refused: bool = False   # strict mode and some line was invalid: nothing queued
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        return self.recorded / self.elapsed if self.elapsed > 0 else 0.0


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
        """``placement``: the file-wide regions/quorum keys (resolved); ``place(regions,
        quorum)`` validates and resolves a line's own (``Runtime.placement``)."""
        self.placement = dict(placement or {})
        self.place = place
        self.defaults_raw = {**defaults.to_json(), **self.placement}
        self.default_json = _options_json(defaults, self.placement)
        self.keep_duplicates = keep_duplicates
        self.seen = DigestSet()
        self._cache: dict[str, str] = {}

    def job(self, url_text: str, raw: Mapping[str, Any] | None) -> tuple[str, str] | None:
        """The job, or None for a duplicate; InvalidInput (with a short reason) when bad."""
        url = fast_normalise(url_text)
        opts = self.default_json if not raw else self._options(raw)
        if not self.keep_duplicates:
            digest = hashlib.blake2b(f"{url}\n{opts}".encode(), digest_size=8).digest()
            if not self.seen.add(int.from_bytes(digest, "little")):
                return None
        return url, opts

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


def records(source: Source, fmt: str | None) -> tuple[str, Iterator[Record | Refusal]]:
    """The detected format and the source's records (refusals interleaved, in line order)."""
    lines = source.lines()
    head: list[tuple[int, str | None, str | None]] = []
    first = None
    if fmt is None:
        for item in lines:  # peek at the first meaningful line, keeping what was read
            head.append(item)
            text = item[1]
            if text is not None and text.strip() and not text.lstrip().startswith("#"):
                first = text
                break
            if len(head) >= 10000:
                break
        fmt = detect_format(source.name, first)
    if fmt not in FORMATS:
        raise ImportUsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    chained = _chain(head, lines)
    if fmt == "csv":
        return fmt, _csv_records(chained, source.name)
    if fmt == "jsonl":
        return fmt, _jsonl_records(chained)
    return fmt, _text_records(chained)


def _chain(head: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from head
    head.clear()
    yield from rest


# ---------------------------------------------------------------------------- the pipeline


class Pipeline:
    """Records chunks of jobs in one thread and publishes them in ``publishers`` others.

    ``put`` blocks when the stages are behind (bounded queues: flat memory). The first
    database error stops the pipeline (``put`` raises it); a broker error makes every
    later chunk be recorded and marked unpublished instead of waiting for RabbitMQ again.
    """

    def __init__(self, runtime: Any, batch_id: int, report: ImportReport, *, publishers: int = PUBLISHERS) -> None:
        self.rt = runtime
        self.store = runtime.store
        self.batch_id = batch_id
        self.report = report
        self.immediate = runtime.broker is None
        self.publishers = 1 if self.immediate else max(1, publishers)
        self._record_q: queue.Queue[list[tuple[str, str]] | None] = queue.Queue(maxsize=2)
        self._publish_q: queue.Queue[tuple[list[int], list[tuple[str, str]]] | None] = queue.Queue(
            maxsize=self.publishers + 1)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._opts_cache: dict[str, dict[str, Any]] = {}
        self._pending: list[Any] = []  # immediate mode: the previous chunk's calls
        # The recording and publishing threads wait on sockets; with the GIL's default 5 ms
        # switch interval each of their many small waits ends in a 5 ms queue behind the
        # validating thread (measured: recording 35% slower). 1 ms for the import's life.
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, 0.001))
        self._threads = [threading.Thread(target=self._record_loop, name="import-record", daemon=True)]
        self._threads += [threading.Thread(target=self._publish_loop, name=f"import-publish-{i}", daemon=True)
                          for i in range(self.publishers)]
        for thread in self._threads:
            thread.start()

    def put(self, chunk: list[tuple[str, str]]) -> None:
        while True:
            if self._stop.is_set():
                raise self.error or RuntimeError("import pipeline stopped")
            try:
                self._record_q.put(chunk, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait for every chunk put so far to be recorded and published (or marked)."""
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
                ids = record_jobs(self.store, self.batch_id, chunk)
                with self._lock:
                    self.report.recorded += len(ids)
                self._publish_q.put((ids, chunk))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._fail(exc)
        finally:
            for _ in range(self.publishers):
                self._publish_q.put(None)

    def _publish_loop(self) -> None:
        broker = None
        try:
            if not self.immediate:
                from runner.taskq.broker import open_broker

                settings = self.rt.settings
                broker = open_broker(settings.broker_url, settings.queue,
                                     publish_timeout=getattr(settings, "publish_timeout", 30.0))
            while True:
                item = self._publish_q.get()
                if item is None:
                    return
                if self._stop.is_set():
                    continue  # the database failed: what is recorded is found by requeue --stale
                ids, chunk = item
                self._publish(broker, ids, chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._fail(exc)
            while self._publish_q.get() is not None:  # let the recorder finish its puts
                pass
        finally:
            if broker is not None:
                broker.close()

    def _publish(self, broker: Any, ids: list[int], chunk: list[tuple[str, str]]) -> None:
        error = self.report.broker_error
        if error is None:
            try:
                if broker is None:
                    self._run_here(ids, chunk)
                else:
                    self._publish_regions(broker, ids, chunk)
                with self._lock:
                    self.report.published += len(ids)
                return
            except BrokerError as exc:
                with self._lock:
                    self.report.broker_error = self.report.broker_error or str(exc)
                error = str(exc)
        if broker is not None:
            self.store.mark_publish_failed(ids, f"not published: {error}")
        with self._lock:
            self.report.unpublished += len(ids)

    def _publish_regions(self, broker: Any, ids: list[int], chunk: list[tuple[str, str]]) -> None:
        """One message stream per region (most chunks: the default region alone), then
        mark the chunk published, jobs that named regions with their no-worker bound."""
        base = self.rt.settings.queue
        if not any('"regions"' in opts for _, opts in chunk):
            broker.publish(check_messages(ids, chunk), routing_key=base)
            self.rt.mark_published(ids)
            return
        by_region: dict[str, tuple[list[int], list[tuple[str, str]]]] = {}
        regional: list[int] = []
        for job_id, job in zip(ids, chunk, strict=True):
            options = self._opts(job[1])
            if "regions" in options:
                regional.append(job_id)
            for region in job_regions(options):
                region_ids, region_jobs = by_region.setdefault(region, ([], []))
                region_ids.append(job_id)
                region_jobs.append(job)
        for region, (region_ids, region_jobs) in by_region.items():
            broker.publish(check_messages(region_ids, region_jobs, region=region),
                           routing_key=queue_for(base, region))
        self.rt.mark_published(ids, regional)

    def _run_here(self, ids: list[int], chunk: list[tuple[str, str]]) -> None:
        """Immediate mode: the checks run in this process's pool. Wait for the previous
        chunk's checks first, so at most two chunks of calls are ever pending in memory."""
        calls = [Call(CHECK_TASK, (i, url, self._opts(o))) for i, (url, o) in zip(ids, chunk, strict=True)]
        for handle in self._pending:
            try:
                handle.result()
            except Exception:  # noqa: BLE001 - the task logged it; its job stays queued
                pass
        self._pending = self.rt.app.enqueue(calls)

    def _opts(self, text: str) -> dict[str, Any]:
        found = self._opts_cache.get(text)
        if found is None:
            found = json.loads(text)
            if len(self._opts_cache) < 4096:
                self._opts_cache[text] = found
        return found


def check_messages(ids: list[int], chunk: list[tuple[str, str]], pack: int = DEFAULT_PACK,
                   region: str = DEFAULT_REGION) -> list[bytes]:
    """Task messages for recorded jobs, ``pack`` check calls to a message.

    Byte for byte what ``runner.taskq.app.encode`` makes of ``Call(CHECK_TASK, (id, url,
    options))`` calls (tests/batch check it), but written from the options' JSON text
    directly: no Call objects, no dicts to serialise again. It was an eighth of the
    import's CPU. Call ids need only be unique: one random prefix per message.
    """
    task = json.dumps(CHECK_TASK)
    kwargs = "{}" if region == DEFAULT_REGION else json.dumps({"region": region}, separators=(",", ":"))
    head = f'{{"v":{MESSAGE_VERSION},"calls":['
    dumps = json.dumps
    messages = []
    for start in range(0, len(ids), pack):
        prefix = uuid.uuid4().hex[:24]
        calls = ",".join(
            f'{{"id":"{prefix}{n:08x}","task":{task},"args":[{job_id},{dumps(url)},{opts}],"kwargs":{kwargs}}}'
            for n, (job_id, (url, opts)) in enumerate(zip(ids[start:start + pack], chunk[start:start + pack], strict=True))
        )
        messages.append(f"{head}{calls}]}}".encode())
    return messages


# ---------------------------------------------------------------------------- the import


class Importer:
    """One import: validate the source's records, then record and queue the valid ones.

    ``on_reject`` receives each refusal as it is found (``FILE:LINE: reason: 'text'``);
    ``on_progress`` is called now and then with the report (from any thread).
    """

    def __init__(self, runtime: Any, *, defaults: CheckOptions | None = None, fmt: str | None = None,
                 strict: bool = False, keep_duplicates: bool = False, batch_name: str | None = None,
                 idempotency_key: str | None = None, publishers: int = PUBLISHERS,
                 on_reject: Callable[[Rejected], None] | None = None,
                 on_progress: Callable[[ImportReport], None] | None = None,
                 regions: Any = None, quorum: Any = None) -> None:
        """``regions``/``quorum``: the file-wide defaults (a line's own keys override them)."""
        self.rt = runtime
        self.validator = Validator(defaults or CheckOptions(), keep_duplicates=keep_duplicates,
                                   placement=runtime.placement(regions, quorum), place=runtime.placement)
        self.fmt = fmt
        self.strict = strict
        self.batch_name = batch_name
        self.idempotency_key = idempotency_key
        self.publishers = publishers
        self.on_reject = on_reject or (lambda rejected: None)
        self._on_progress = on_progress
        self._last_progress = 0.0

    def run(self, source: Source) -> ImportReport:
        """Import ``source``. Raises ImportUsageError (file-level problem, nothing queued)
        or a StoreError (database gone; the report is attached as ``exc.report``)."""
        report = ImportReport(source.name)
        if self.rt.broker is not None:
            self.rt.broker.ping()  # RabbitMQ down: exit 3 before anything is recorded
        report.format, items = records(source, self.fmt)
        jobs = self._validated(source, items, report)
        try:
            if self.strict:
                with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
                    for url, opts in jobs:
                        spool.write(f"{url}\t{opts}\n")
                    if report.rejected:
                        report.refused = True
                    else:
                        spool.seek(0)
                        self._queue(source, (tuple(line.rstrip("\n").split("\t", 1)) for line in spool), report)  # type: ignore[misc]
            else:
                self._queue(source, jobs, report)
        except (StoreError, BrokerError) as exc:
            exc.report = report  # type: ignore[attr-defined]
            raise
        finally:
            report.finished = time.monotonic()
        return report

    def _validated(self, source: Source, items: Iterator[Record | Refusal], report: ImportReport) -> Iterator[tuple[str, str]]:
        name = source.name
        validator = self.validator
        for item in items:
            number = item[0]
            if isinstance(item[2], str):  # a refusal from the parser
                self._reject(Rejected(item[2], item[1], f"{name}:{number}"), report)
                continue
            try:
                job = validator.job(item[1], item[2])  # type: ignore[arg-type]
            except InvalidInput as exc:
                self._reject(Rejected(item[1], str(exc), f"{name}:{number}"), report)
                continue
            if job is None:
                report.duplicates += 1
                continue
            report.valid += 1
            yield job
            if report.valid % 512 == 0:
                report.lines = source.line_count
                self._progress(report)
        report.lines = source.line_count

    def _reject(self, rejected: Rejected, report: ImportReport) -> None:
        report.rejected += 1
        self.on_reject(rejected)

    def _queue(self, source: Source, jobs: Iterable[tuple[str, str]], report: ImportReport) -> None:
        pipeline: Pipeline | None = None
        skip = 0
        chunk: list[tuple[str, str]] = []
        try:
            for job in jobs:
                if pipeline is None:
                    pipeline, skip = self._start(source, report)
                if skip:
                    skip -= 1
                    report.already += 1
                    continue
                chunk.append(job)
                if len(chunk) >= CHUNK:
                    pipeline.put(chunk)
                    chunk = []
                    self._progress(report)
            if chunk and pipeline is not None:
                pipeline.put(chunk)
        finally:
            if pipeline is not None:
                pipeline.close()
            self._progress(report, force=True)

    def _start(self, source: Source, report: ImportReport) -> tuple[Pipeline, int]:
        """Create (or find, by idempotency key) the batch and start the pipeline."""
        from runner.jobs.runtime import default_batch_name

        name = self.batch_name or default_batch_name(
            "stdin" if source.name == "<stdin>" else os.path.basename(source.name))
        report.batch = batch = self.rt.store.create_batch(name, self.idempotency_key)
        if batch.existed:
            self._republish(batch.id, report)
        pipeline = Pipeline(self.rt, batch.id, report, publishers=self.publishers)
        return pipeline, batch.size if batch.existed else 0

    def _republish(self, batch_id: int, report: ImportReport) -> None:
        """An earlier run of this import left jobs unpublished: publish them now."""
        after = 0
        while True:
            stale = unpublished_jobs(self.rt.store, batch_id, after_id=after, limit=CHUNK)
            if not stale:
                return
            self.rt.publish(stale, requeued=True)
            report.republished += len(stale)
            after = stale[-1][0]

    def _progress(self, report: ImportReport, *, force: bool = False) -> None:
        if self._on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_progress >= 0.1:
            self._last_progress = now
            self._on_progress(report)


__all__ = ["FORMATS", "ImportReport", "ImportUsageError", "Importer", "Pipeline", "Source", "Validator",
           "detect_format", "fast_normalise", "records"]
