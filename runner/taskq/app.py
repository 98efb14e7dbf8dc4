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

Immediate mode (``memory://``, the embedded default and unit tests) runs calls in a local
thread pool at enqueue; the handle's ``result()`` waits for them. With ``inline=True`` each
call runs synchronously on the enqueueing thread, before ``enqueue`` returns: deterministic,
so a unit test needs no waiting (Huey's ``immediate``).

Arguments travel as JSON. An argument that is already JSON text (a batch's options, validated
once and kept as text for a million jobs) can be passed as :class:`Raw`: it is written into
the message as it is, and decoded on the way in like any other argument.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from runner.backoff import backoff

log = logging.getLogger("urltester.runner")

MESSAGE_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20  # a larger message is poison: dead-lettered, never parsed
DEFAULT_PACK = 10  # calls per message in a bulk enqueue

# Per-thread facts about the call being run (``redelivered``), set by the consumer.
context = threading.local()


class PoisonMessage(Exception):
    """A message that can never succeed (bad JSON, unknown task, too large): dead-letter it."""


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
_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # C: what dumps does for a str


def _arg(value: Any) -> str:
    kind = type(value)
    if kind is Raw:
        return value.text
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


def decode(body: bytes) -> list[Call]:
    """The calls in a message body, or PoisonMessage saying why it can never run."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise PoisonMessage(f"message of {len(body)} bytes is larger than {MAX_MESSAGE_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoisonMessage(f"message is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION or not isinstance(data.get("calls"), list):
        raise PoisonMessage("message is not a urltester task message (v1 with a list of calls)")
    calls = []
    for raw in data["calls"]:
        if not (isinstance(raw, dict) and isinstance(raw.get("task"), str) and isinstance(raw.get("args", []), list)
                and isinstance(raw.get("kwargs", {}), dict)):
            raise PoisonMessage("a call in the message is malformed")
        calls.append(Call(raw["task"], tuple(raw.get("args", [])), raw.get("kwargs", {}), str(raw.get("id", ""))))
    return calls


def _log_failure(call: Call) -> Callable[[Future[Any]], None]:
    def done(future: Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            exc = future.exception()
            log.error("task %s (call %s) failed: %s: %s", call.task, call.id, type(exc).__name__, exc)

    return done


class Broker(Protocol):
    """What the app needs of a broker: publish packs of calls, durably."""

    def publish(self, messages: Sequence[bytes], *, headers: dict[str, Any] | None = None) -> None: ...

    def close(self) -> None: ...


class TaskHandle:
    """What enqueueing returns: the call's id, and in immediate mode its result."""

    def __init__(self, call: Call, future: Future[Any] | None = None) -> None:
        self.call = call
        self.id = call.id
        self._future = future

    def result(self, timeout: float | None = None) -> Any:
        if self._future is None:
            raise RuntimeError("results are stored in the database; only immediate mode returns them here")
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
    """Registry of tasks plus the broker they travel on.

    ``broker=None`` is immediate mode: calls run in a local pool of ``immediate_workers``
    threads at enqueue, or, with ``inline``, on the enqueueing thread before ``enqueue``
    returns.
    """

    def __init__(self, broker: Broker | None = None, *, immediate_workers: int = 8, inline: bool = False) -> None:
        self.broker = broker
        self.tasks: dict[str, Task] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._immediate_workers = immediate_workers
        self.inline = inline

    @property
    def immediate(self) -> bool:
        return self.broker is None

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

    def enqueue(self, calls: Sequence[Call], *, pack: int = 1, headers: dict[str, Any] | None = None) -> list[TaskHandle]:
        """Send calls, ``pack`` to a message. Returns after the broker confirmed every message
        (raises BrokerError otherwise: then none of the calls may be assumed sent)."""
        for call in calls:
            if call.task not in self.tasks:
                raise KeyError(f"unknown task {call.task!r}")
        if self.broker is None and self.inline:
            return [TaskHandle(call, self._run_inline(call.decoded())) for call in calls]
        if self.broker is None:
            pool = self._immediate_pool()
            handles = [TaskHandle(call, pool.submit(self.execute, call.decoded())) for call in calls]
            for handle in handles:
                handle._future.add_done_callback(_log_failure(handle.call))  # type: ignore[union-attr]
            return handles
        pack = max(1, pack)
        messages = [encode(calls[i:i + pack]) for i in range(0, len(calls), pack)]
        self.broker.publish(messages, headers=headers)
        return [TaskHandle(call) for call in calls]

    def execute(self, call: Call, *, wait: bool = True) -> Any:
        """Run one call with its task's retries; PoisonMessage if the task is unknown.

        A task may return a :class:`~concurrent.futures.Future`: its work is done and only
        its completion is pending elsewhere (a result waiting for a batched commit). With
        ``wait`` (inline, immediate mode) that future is waited for and its value returned.
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
                retry=retry_if_exception_type(task.retry_on),
                reraise=True,
            )
            result = retrying(task.fn, *call.args, **call.kwargs)
        if wait and isinstance(result, Future):
            return result.result()
        return result

    def _run_inline(self, call: Call) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(self.execute(call))
        except Exception as exc:  # noqa: BLE001 - kept for result(), logged like the pool's
            done.set_exception(exc)
            _log_failure(call)(done)
        return done

    def _immediate_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._immediate_workers, thread_name_prefix="urltester-check")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.broker is not None:
            self.broker.close()
