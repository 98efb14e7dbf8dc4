"""The pool's options and their defaults: one place, read by ``runner start``'s flags.

A module of its own so that the CLI can show the defaults without importing kombu.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from runner.taskq.concurrency import DEFAULT_MAX, ConcurrencyOptions


@dataclass(frozen=True)
class PoolOptions:
    concurrency: int | None = None  # None: adaptive (runner.taskq.concurrency); a number fixes it
    max_concurrency: int = DEFAULT_MAX  # the adaptive concurrency's ceiling (threads follow it)
    processes: int = field(default_factory=lambda: os.cpu_count() or 1)
    prefetch: int | None = None  # messages; default = concurrency
    shutdown_timeout: float = 30.0
    hold_budget: float = 600.0  # seconds a message may wait before its unstarted calls are handed on
    crash_limit: int = 5  # child deaths within crash_window seconds that end the supervisor
    crash_window: float = 60.0
    metrics_port: int | None = None  # serve /metrics (every process summed) on this port
    metrics_address: str = "0.0.0.0"  # noqa: S104 - every IPv4 interface: scraped from outside

    def concurrency_options(self) -> ConcurrencyOptions:
        if self.concurrency:
            return ConcurrencyOptions.fixed_at(self.concurrency)
        top = max(1, self.max_concurrency)
        return ConcurrencyOptions(start=min(top, ConcurrencyOptions.start),
                                  minimum=min(top, ConcurrencyOptions.minimum), maximum=top)
