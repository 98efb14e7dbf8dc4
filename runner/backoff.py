"""The one backoff policy of the project: exponential, capped, with full jitter."""

from __future__ import annotations

from tenacity import wait_exponential, wait_random
from tenacity.wait import wait_base


def backoff(initial: float, maximum: float) -> wait_base:
    """Waits ``initial``, ``2*initial``, ... up to ``maximum`` seconds, plus up to ``initial`` of
    jitter so that many workers reconnecting at once do not stampede."""
    return wait_exponential(multiplier=initial, min=initial, max=maximum) + wait_random(0, initial)
