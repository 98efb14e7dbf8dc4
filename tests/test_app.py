"""The Huey-like runner in immediate mode, and message encoding (no services)."""

import json
import threading
from concurrent.futures import Future

import pytest

from runner.taskq.app import MAX_MESSAGE_BYTES, App, Call, PoisonMessage, decode, encode
from runner.taskq.memory import MemoryBroker


def test_task_enqueue_call_local_and_map_in_immediate_mode() -> None:
    app = App(MemoryBroker())
    seen: list[int] = []
    lock = threading.Lock()

    @app.task()
    def add(a: int, b: int) -> int:
        with lock:
            seen.append(a + b)
        return a + b

    handle = add(1, 2)
    assert handle.result(timeout=5) == 3
    assert add.call_local(2, 3) == 5
    handles = add.map([(i, i) for i in range(20)])
    assert sorted(h.result(timeout=5) for h in handles) == [2 * i for i in range(20)]
    assert len({h.id for h in handles}) == 20
    app.close()


def test_task_retries_with_backoff_then_succeeds() -> None:
    app = App(MemoryBroker())
    attempts = []

    @app.task(attempts=3, retry_delay=0.01, retry_on=(ConnectionError,))
    def shaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("transient")
        return "done"

    assert shaky.call_local() == "done"
    assert len(attempts) == 3


def test_task_does_not_retry_other_errors() -> None:
    app = App(MemoryBroker())
    attempts = []

    @app.task(attempts=4, retry_delay=0.01, retry_on=(ConnectionError,))
    def broken() -> None:
        attempts.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        broken.call_local()
    assert len(attempts) == 1


def test_messages_are_json_and_round_trip() -> None:
    calls = [Call("check", (1, "http://a.test/", {})), Call("check", (2, "http://b.test/", {"method": "HEAD"}))]
    body = encode(calls)
    assert json.loads(body)["v"] == 1
    assert decode(body) == calls


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'{"v": 2, "calls": []}', "not a urltester task message"),
        (b'{"v": 1, "calls": [{"task": 5}]}', "malformed"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "larger than"),
    ],
)
def test_poison_messages_are_named(body: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage) as info:
        decode(body)
    assert reason in str(info.value)


def test_unknown_task_is_poison() -> None:
    app = App(MemoryBroker())
    with pytest.raises(PoisonMessage, match="unknown task 'nope'"):
        app.execute(Call("nope"))


def test_a_task_may_finish_later_and_inline_callers_wait_for_it() -> None:
    """A task returning a future (the check, whose result waits for a batched commit) is
    done when the future is: inline calls wait for it, the consumer does not."""
    app = App(MemoryBroker())
    pending: Future[str] = Future()

    @app.task()
    def stored_later() -> Future[str]:
        return pending

    assert app.execute(Call("stored_later"), wait=False) is pending
    threading.Timer(0.2, pending.set_result, ("committed",)).start()
    assert stored_later.call_local() == "committed"
    assert stored_later().result(timeout=5) == "committed"  # immediate mode too
    app.close()


def test_inline_immediate_mode_runs_each_call_before_enqueue_returns() -> None:
    """Huey's immediate mode: deterministic, so a unit test needs no waiting."""
    app = App(MemoryBroker(inline=True))
    seen: list[tuple[str, threading.Thread]] = []

    @app.task()
    def record(text: str) -> str:
        seen.append((text, threading.current_thread()))
        return text.upper()

    handles = app.enqueue([record.s("a"), record.s("b")])
    assert seen == [("a", threading.current_thread()), ("b", threading.current_thread())]
    assert [h.result(timeout=0) for h in handles] == ["A", "B"]


def test_inline_mode_keeps_a_failing_call_for_its_handle() -> None:
    app = App(MemoryBroker(inline=True))

    @app.task()
    def broken() -> None:
        raise ValueError("bug")

    (handle,) = app.enqueue([broken.s()])
    with pytest.raises(ValueError, match="bug"):
        handle.result(timeout=0)


def test_raw_json_arguments_travel_as_the_value_they_encode() -> None:
    from runner.taskq.app import Raw

    app = App(MemoryBroker(inline=True))
    got = []

    @app.task()
    def take(options: dict) -> None:
        got.append(options)

    app.enqueue([take.s(Raw('{"a":[1,2],"b":"é"}'))])
    assert got == [{"a": [1, 2], "b": "é"}]
    assert decode(encode([take.s(Raw('{"a":1}'))]))[0].args == ({"a": 1},)
