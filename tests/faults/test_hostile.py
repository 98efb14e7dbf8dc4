"""Case 9, hostile input: a `runner start --processes 2` pool on the real RabbitMQ receives a
bz2 bomb, deeply nested JSON, bad compressed bodies, garbage and a call whose error quotes
a terminal escape between the two halves of a real batch. Every hostile message is dead-lettered with its reason; the
pool keeps its two processes (the same ones) and its memory; every real job is done, each URL requested once.
"""

from __future__ import annotations

import bz2
import time
from pathlib import Path

import pytest

from runner.taskq.app import Call, encode
from runner.taskq.broker import AmqpBroker
from tests.faults.harness import Harness, N
from tests.faults.test_faults import _children
from tests.support.services import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.e2e, pytest.mark.timeout(180)]

# 16 bz2 streams of 64 MiB of zeros: 1.3 KB on the wire, 1 GiB once kombu's Message had
# inflated it (bz2.decompress reads every stream). The pool peaked at 2.2 GiB.
BOMB = bz2.compress(bytes(64 << 20)) * 16

HOSTILE: list[tuple[str, bytes, dict[str, str], str]] = [
    ("bz2 bomb", BOMB, {"compression": "application/x-bz2"}, "inflates (application/x-bz2) to more than"),
    ("deep JSON", b"[" * 100_000, {}, "nested more than 32 levels"),
    ("garbage", bytes(range(256)) * 4, {}, "not JSON"),
    ("invalid bz2", b"BZh9 garbage", {"compression": "application/x-bz2"}, "not valid application/x-bz2 data"),
    ("invalid gzip", b"\x1f\x8bgarbage", {"compression": "application/x-gzip"}, "not valid application/x-gzip data"),
    ("invalid lzma", b"\xfd7zXZ garbage", {"compression": "application/x-lzma"}, "not valid application/x-lzma data"),
    ("unknown codec", b"{}", {"compression": "application/zstd"}, "compression 'application/zstd' is not supported"),
    # Python's TypeError quotes the keyword raw: the worker's log must not carry the escape.
    ("escape in an error", encode([Call("check", (), {"\x1b[2J\x1b]0;owned\x07": 1})]), {},
     "unexpected keyword argument"),
]


def _rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def test_hostile_messages_between_real_jobs_leave_the_pool_whole(harness: Harness) -> None:
    harness.case = "9 hostile input"
    urls = harness.target.urls(tag="hostile")
    harness.submit(urls[: N // 2])
    pool = harness.start_worker("--processes", "2", "--concurrency", "16")
    harness.wait_done(N // 8, 60, alive=[pool])
    before = _children(pool.pid)
    assert len(before) == 2, f"expected 2 worker processes, found {before}"
    rss_before = sum(_rss_kb(pid, "VmRSS") for pid in before)
    broker = AmqpBroker(harness.amqp_url, harness.queue)
    for _, body, headers, _ in HOSTILE:
        broker.publish([body], headers=headers)
    poisoned_at = time.monotonic()
    assert harness.done() < N // 2, "the first half finished before the hostile messages arrived"
    harness.submit(urls[N // 2:])  # the rest of the batch queues behind the hostile messages
    finished = harness.wait_done(N, 120, alive=[pool])
    wait_until(lambda: broker.ping().dead >= len(HOSTILE), 30, interval=0.2,
               message="every hostile message dead-lettered")
    after = _children(pool.pid)
    peak_kb = sum(_rss_kb(pid, "VmHWM") for pid in after)
    dead = broker.get_dead(limit=50)
    broker.close()
    reasons = [h.get("x-urltester-reason", "") for h, _ in dead]
    assert len(dead) == len(HOSTILE), reasons
    for name, _, _, expected in HOSTILE:
        assert sum(expected in r for r in reasons) == 1, (name, reasons)
    assert after == before, f"worker processes were replaced: {before} -> {after}"
    log = harness.log(pool)
    assert "reconnecting" not in log and "Traceback" not in log, log[-3000:]
    assert "\x1b" not in log and "\\x1b[2J" in log, "a log line carried a raw terminal escape"
    assert peak_kb < 2 * 150 * 1024, f"peak RSS {peak_kb // 1024} MB for two processes"
    hits = harness.target.hits()
    ours = {k: v for k, v in hits.items() if "t=hostile" in k}
    assert len(ours) == N and set(ours.values()) == {1}, "a real job was checked twice or not at all"
    row = harness.figures(max(0.0, finished - poisoned_at),
                          f"{len(dead)} dead-lettered; processes {len(before)} -> {len(after)} (same pids); "
                          f"RSS {rss_before // 1024} MB before, peak {peak_kb // 1024} MB (2 processes)")
    harness.assert_clean(row)
