"""A small task runner in the spirit of Huey, on kombu.

    app = App(broker)

    @app.task(attempts=3, retry_delay=1.0)
    def add(a, b):
        return a + b

    handle = add(1, 2)          # enqueue; returns a TaskHandle with the call's id
    add.call_local(1, 2)        # run inline, now
    add.map([(1, 2), (3, 4)])   # bulk enqueue, several calls per message

Messages are JSON (never pickle): ``{"v": 1, "calls": [{"id", "task", "args", "kwargs"}]}``.
One message may carry several calls so a bulk enqueue reaches tens of thousands of calls a
second with publisher confirms; a worker acks the message once every call in it is finished.

Decoding treats a body as hostile (anyone who can publish to the queue can send one): it
is refused before it is parsed if it is larger than :data:`MAX_MESSAGE_BYTES`, a
``compression`` header (kombu's) is honoured only for the codecs the standard library has
and only up to that same size, and JSON nested deeper than :data:`MAX_DEPTH` is refused.
Every refusal is a :class:`PoisonMessage` whose text says why; nothing else escapes
:func:`decode`.

An app always publishes to a broker: RabbitMQ's (:mod:`runner.taskq.broker`), whose
consumers are ``runner start`` processes, or the in-memory one (:mod:`runner.taskq.memory`,
``memory://``: the embedded default and unit tests), whose consumer is this process. The
app does not know which: the in-memory broker's ``inline`` (each call run before
``enqueue`` returns, Huey's immediate mode) is the broker's property.

Arguments travel as JSON. An argument that is already JSON text (a batch's options, validated
once and kept as text for a million jobs) can be passed as :class:`Raw`: it is written into
the message as it is, and decoded on the way in like any other argument.
"""

from __future__ import annotations

import bz2
import itertools
import json
import lzma
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import (
    Retrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
)

from runner.backoff import backoff

MESSAGE_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20  # a larger message (or one that inflates larger) is poison, never parsed
MAX_DEPTH = 32  # JSON nesting a task message may have (ours: 6); deeper is poison
DEFAULT_PACK = 10  # calls per message in a bulk enqueue

# A call held back (deferred, or published with ``delay``) waits in a delay queue whose
# messages all share one TTL (RabbitMQ only expires messages at a queue's head, so one TTL
# per queue keeps them in order), then is dead-lettered back onto its work queue. The delay
# is rounded down to a bucket (powers of two from 1/8 s): the call comes back early, at
# worst by half, and defers itself again for the rest. Buckets under a second exist so that
# a call a few hundred ms from its slot need not wait in the worker with its message unacked
# (holding a prefetch slot that other hosts' checks could use).
DELAY_BUCKETS = tuple(2.0 ** k for k in range(-3, 11))  # 0.125 s .. 1024 s


def delay_bucket(delay: float) -> float:
    return max((b for b in DELAY_BUCKETS if b <= delay), default=DELAY_BUCKETS[0])


# Per-thread facts about the call being run (``redelivered``), set by the consumer.
context = threading.local()


class PoisonMessage(Exception):
    """A message that can never succeed (bad JSON, unknown task, too large): dead-letter it."""


class Defer(Exception):  # an instruction to the runner, not an error
    """Raised by a task: run this call again in ``delay`` seconds, with ``kwargs`` merged in.

    The consumer does not hold a worker thread meanwhile: a short delay waits in the
    process's timer, a longer one travels back through the broker (a delay queue) and the
    message is acked. The task decides what the new kwargs carry (e.g. a reservation).
    A caller that runs the call itself (``call_local``, the in-memory broker) waits the
    delay and runs the call again.
    """

    def __init__(self, delay: float, kwargs: dict[str, Any] | None = None) -> None:
        super().__init__(f"deferred for {delay:.3f} s")
        self.delay = max(0.0, delay)
        self.kwargs = kwargs or {}

    def apply(self, call: Call) -> Call:
        """The call to run later: the same id and task, the kwargs updated."""
        return Call(call.task, call.args, {**call.kwargs, **self.kwargs}, call.id)


@dataclass(frozen=True, slots=True)
class Raw:
    """An argument that is JSON text already: written into the message verbatim."""

    text: str

    def value(self) -> Any:
        return json.loads(self.text)


# Call ids need only be unique: a random per-process prefix and a counter (next() on an
# itertools.count is atomic), a fraction of uuid4's cost for a million calls.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _new_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"


@dataclass(slots=True)
class Call:
    """One task invocation, as it travels in a message."""

    task: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)

    def decoded(self) -> Call:
        """The call as a worker receives it: :class:`Raw` arguments parsed."""
        if not any(isinstance(a, Raw) for a in self.args):
            return self
        args = tuple(a.value() if isinstance(a, Raw) else a for a in self.args)
        return Call(self.task, args, self.kwargs, self.id)


_dumps = json.JSONEncoder(separators=(",", ":")).encode  # one encoder: dumps() with options builds one per call
_quote = json.encoder.encode_basestring_ascii  # C: what dumps does for a str


def _arg(value: Any) -> str:
    kind = type(value)
    if kind is Raw:
        text: str = value.text
        return text
    if kind is str:
        return _quote(value)
    if kind is int:
        return str(value)
    return _dumps(value)


def encode(calls: Sequence[Call]) -> bytes:
    """The message for ``calls``: ``{"v":1,"calls":[{"id","task","args","kwargs"}...]}``.

    Written piece by piece rather than as one json.dumps of dicts so that :class:`Raw`
    arguments go in as they are (a large import's options: an eighth of its CPU, before).
    """
    parts = [
        f'{{"id":{_quote(c.id)},"task":{_quote(c.task)},"args":[{",".join(map(_arg, c.args))}],'
        f'"kwargs":{_dumps(c.kwargs) if c.kwargs else "{}"}}}'
        for c in calls
    ]
    return f'{{"v":{MESSAGE_VERSION},"calls":[{",".join(parts)}]}}'.encode()


def decode(body: bytes, headers: Mapping[str, Any] | None = None) -> list[Call]:
    """The calls in a message body, or PoisonMessage saying why it can never run.

    ``headers`` are the message's application headers; only ``compression`` is read.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise PoisonMessage(f"message body is {type(body).__name__}, not bytes")
    if len(body) > MAX_MESSAGE_BYTES:
        raise PoisonMessage(f"message of {len(body)} bytes is larger than {MAX_MESSAGE_BYTES}")
    compression = (headers or {}).get("compression")
    if compression is not None:
        body = inflate(bytes(body), compression)
    try:
        data = json.loads(body)
    except RecursionError:
        raise PoisonMessage(f"message is JSON nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"message is not JSON: {exc}") from exc
    if nesting_depth(data) > MAX_DEPTH:
        raise PoisonMessage(f"message is JSON nested more than {MAX_DEPTH} levels deep")
    if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION or not isinstance(data.get("calls"), list):
        raise PoisonMessage("message is not a urltester task message (v1 with a list of calls)")
    calls = []
    for raw in data["calls"]:
        if not (isinstance(raw, dict) and isinstance(raw.get("task"), str) and isinstance(raw.get("args", []), list)
                and isinstance(raw.get("kwargs", {}), dict) and isinstance(raw.get("id", ""), str | int)):
            raise PoisonMessage("a call in the message is malformed")
        calls.append(Call(raw["task"], tuple(raw.get("args", [])), raw.get("kwargs", {}), str(raw.get("id", ""))))
    return calls


# kombu's ``compression`` header values (content types and aliases) for the codecs the
# standard library decompresses incrementally, so that the output can be capped.
_INFLATERS: dict[str, Callable[[], Any]] = {
    "application/x-gzip": lambda: zlib.decompressobj(47),  # kombu writes zlib; 47 also takes gzip
    "gzip": lambda: zlib.decompressobj(47),
    "zlib": lambda: zlib.decompressobj(47),
    "application/x-bz2": bz2.BZ2Decompressor,
    "bzip2": bz2.BZ2Decompressor,
    "bzip": bz2.BZ2Decompressor,
    "application/x-lzma": lzma.LZMADecompressor,
    "lzma": lzma.LZMADecompressor,
    "xz": lzma.LZMADecompressor,
}


def inflate(body: bytes, compression: object) -> bytes:
    """``body`` decompressed, never to more than MAX_MESSAGE_BYTES (PoisonMessage otherwise).

    A bz2 body of under 1 KiB can expand to 1 GiB, so the decompressor is asked for at
    most the limit plus one byte; a body that would give more is refused unread.
    """
    name = compression.strip().lower() if isinstance(compression, str) else None
    make = _INFLATERS.get(name or "")
    if make is None:
        shown = repr(compression)[:60]
        raise PoisonMessage(f"message compression {shown} is not supported (use {', '.join(sorted(set(_INFLATERS)))})")
    inflater = make()
    try:
        out: bytes = inflater.decompress(body, MAX_MESSAGE_BYTES + 1)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        raise PoisonMessage(f"message body is not valid {name} data: {exc}") from None
    if len(out) > MAX_MESSAGE_BYTES:
        raise PoisonMessage(f"message inflates ({name}) to more than {MAX_MESSAGE_BYTES} bytes")
    if not inflater.eof:
        raise PoisonMessage(f"message body is truncated {name} data")
    if inflater.unused_data:  # a second stream (bz2 and xz allow many) could be another bomb
        raise PoisonMessage(f"message body has data after its {name} stream")
    return out


def nesting_depth(value: Any) -> int:
    """How deeply lists and objects nest in parsed JSON (iteratively: no recursion to exhaust)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children)
    return deepest


@dataclass
class QueueDepth:
    ready: int
    consumers: int
    dead: int


class Broker(Protocol):
    """What an app and its runtime need of a broker (RabbitMQ's or the in-memory one)."""

    queue: str  # the queue it consumes and publishes to by default

    def attach(self, app: App) -> None:
        """The app whose calls this broker carries: a broker whose consumer is this process
        (the in-memory one) runs them with it; RabbitMQ's consumers are other processes."""

    def publish(self, messages: Sequence[bytes], *, headers: dict[str, Any] | None = None,
                routing_key: str | None = None, delay: float = 0.0) -> Sequence[Future[Any]] | None:
        """Publish packs of calls durably (BrokerError if not). A broker that runs the calls
        in this process returns each call's future, in order; otherwise their results are
        the application's to store. ``delay``: seconds the messages may be held back (a
        broker that cannot, the in-memory one, delivers them now)."""

    def ping(self, queue: str | None = None) -> QueueDepth:
        """The queue's depth (default: the broker's own), or BrokerError if unreachable."""

    def flush(self, timeout: float | None = None) -> bool:
        """Return once what was published no longer needs this process (False on timeout)."""

    def close(self) -> None: ...


class TaskHandle:
    """What enqueueing returns: the call's id, and its result if it ran in this process."""

    def __init__(self, call: Call, future: Future[Any] | None = None) -> None:
        self.call = call
        self.id = call.id
        self._future = future

    def result(self, timeout: float | None = None) -> Any:
        if self._future is None:
            raise RuntimeError("results are stored in the database; only calls run in this process "
                               "(the in-memory broker) return them here")
        return self._future.result(timeout)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.call.task} {self.id}>"


class Task:
    """A function registered with an app; calling it enqueues a call."""

    def __init__(self, app: App, fn: Callable[..., Any], name: str, attempts: int, retry_delay: float,
                 retry_on: tuple[type[BaseException], ...]) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.retry_on = retry_on
        self.__doc__ = fn.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> TaskHandle:
        return self.app.enqueue([Call(self.name, args, kwargs)])[0]

    def call_local(self, *args: Any, **kwargs: Any) -> Any:
        """Run now, in this thread, with the task's retries."""
        return self.app.execute(Call(self.name, args, kwargs))

    def map(self, arg_lists: Iterable[Sequence[Any]], *, pack: int = DEFAULT_PACK) -> list[TaskHandle]:
        """Enqueue one call per argument list, ``pack`` calls to a message."""
        return self.app.enqueue([Call(self.name, tuple(a)) for a in arg_lists], pack=pack)

    def s(self, *args: Any, **kwargs: Any) -> Call:
        """A call of this task, to pass to :meth:`App.enqueue` with others."""
        return Call(self.name, args, kwargs)


class App:
    """Registry of tasks plus the broker they travel on (see the module's docstring)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.tasks: dict[str, Task] = {}
        broker.attach(self)

    def task(self, name: str | None = None, *, attempts: int = 1, retry_delay: float = 1.0,
             retry_on: tuple[type[BaseException], ...] = (Exception,)) -> Callable[[Callable[..., Any]], Task]:
        """Register a task. ``attempts`` in total on ``retry_on`` errors, with exponential
        backoff (starting at ``retry_delay``) and jitter between them."""

        def register(fn: Callable[..., Any]) -> Task:
            task = Task(self, fn, name or fn.__name__, attempts, retry_delay, retry_on)
            if task.name in self.tasks:
                raise ValueError(f"task {task.name!r} is registered twice")
            self.tasks[task.name] = task
            return task

        return register

    def enqueue(self, calls: Sequence[Call], *, pack: int = 1, headers: dict[str, Any] | None = None,
                queue: str | None = None, delay: float = 0.0) -> list[TaskHandle]:
        """Send calls, ``pack`` to a message, to ``queue`` (default: the broker's own), to be
        delivered ``delay`` seconds from now or a little sooner. Returns after the broker
        confirmed every message (raises BrokerError otherwise: then none of the calls may be
        assumed sent)."""
        for call in calls:
            if call.task not in self.tasks:
                raise KeyError(f"unknown task {call.task!r}")
        pack = max(1, pack)
        messages = [encode(calls[i:i + pack]) for i in range(0, len(calls), pack)]
        futures = (self.broker.publish(messages, headers=headers, routing_key=queue, delay=delay) if delay
                   else self.broker.publish(messages, headers=headers, routing_key=queue)) or ()
        handles = [TaskHandle(call) for call in calls]
        for handle, future in zip(handles, futures, strict=False):  # the calls run here, if any
            handle._future = future
        return handles

    def execute(self, call: Call, *, wait: bool = True) -> Any:
        """Run one call (see :meth:`run`); inline (``wait``) a :class:`Defer` is waited out here."""
        while True:
            try:
                return self.run(call, wait=wait)
            except Defer as deferred:
                if not wait:
                    raise
                time.sleep(deferred.delay)
                call = deferred.apply(call)

    def run(self, call: Call, *, wait: bool = True) -> Any:
        """Run one call with its task's retries; PoisonMessage if the task is unknown.

        A task may return a :class:`~concurrent.futures.Future`: its work is done and only
        its completion is pending elsewhere (a result waiting for a batched commit). With
        ``wait`` (``call_local``, the in-memory broker) that future is waited for and its value returned.
        The consumer passes ``wait=False``, settles the message when the future resolves,
        and its worker thread takes the next call at once. Retries cover the task's own
        run, not the pending completion.
        """
        task = self.tasks.get(call.task)
        if task is None:
            raise PoisonMessage(f"unknown task {call.task!r}")
        if task.attempts <= 1:
            result = task.fn(*call.args, **call.kwargs)
        else:
            retrying = Retrying(
                stop=stop_after_attempt(task.attempts),
                wait=backoff(task.retry_delay, 60),
                retry=retry_if_exception_type(task.retry_on) & retry_if_not_exception_type(Defer),
                reraise=True,
            )
            result = retrying(task.fn, *call.args, **call.kwargs)
        if wait and isinstance(result, Future):
            return result.result()
        return result

    def close(self) -> None:
        self.broker.close()
