"""Many checks on servers that close keep-alive connections: paced to meet the closes.

Each thread checks its URLs one after another with a pause of about the server's
keep-alive timeout (1 s) between them, so a pooled connection is reused just as the
server closes it: the race a real fleet meets on Apache, nginx and load balancers.
Shared by tests/conformance/test_keepalive.py and scripts/bench-conformance.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

from runner.check.checker import Checker, CheckResult
from runner.check.options import CheckOptions


@dataclass
class Tally:
    checks: int
    failures: int
    flaky: int
    stale_resent: int
    outcomes: dict[str, int]
    seconds: float

    def line(self, name: str) -> str:
        return (f"{name}: {self.checks} checks, {self.failures} failures, {self.flaky} flaky, "
                f"{self.stale_resent} stale connections re-sent, {self.seconds:.1f} s")


def tally(results: list[CheckResult], seconds: float) -> Tally:
    return Tally(checks=len(results), failures=sum(not r.ok for r in results),
                 flaky=sum(r.flaky for r in results),
                 stale_resent=sum(r.stale_connection_retried for r in results),
                 outcomes=dict(Counter(r.outcome for r in results)), seconds=seconds)


def paced_run(checker: Checker, urls: list[str], options: CheckOptions, threads: int = 100,
              gap: tuple[float, float] = (0.85, 1.15), seed: int = 11) -> Tally:
    """Check ``urls`` on ``threads`` threads, each pausing ``gap`` seconds between checks."""
    per_thread = [urls[i::threads] for i in range(threads)]
    results: list[CheckResult] = []
    lock = threading.Lock()

    def run(mine: list[str], rng: random.Random) -> None:
        for i, url in enumerate(mine):
            if i:
                time.sleep(rng.uniform(*gap))
            result = checker.check(url, options)
            with lock:
                results.append(result)

    t0 = time.monotonic()
    workers = [threading.Thread(target=run, args=(mine, random.Random(seed + n)), daemon=True)
               for n, mine in enumerate(per_thread) if mine]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return tally(results, time.monotonic() - t0)
