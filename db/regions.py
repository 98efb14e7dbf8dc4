"""Regions and the quorum rule, as the store applies them when a region's result lands.

A job names the regions that check it (``options["regions"]``; none means the default
region alone) and a quorum rule (``options["quorum"]``: ``any``, ``all``, ``majority`` or a
number). The store decides the job's outcome in the transaction that stores a region's
result, under the job's row lock, so two regions finishing at once cannot both decide.
Kept here, not in runner/, because the decision must be taken where the rows are locked;
runner/jobs/regions.py validates what users type against the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_REGION = "default"
QUORUM_WORDS = ("any", "all", "majority")
DEFAULT_QUORUM = "majority"
NO_WORKER = "no_worker"  # the outcome of a region that had no live worker within the bound


def job_regions(options: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The regions a job asked for (the default region when it named none)."""
    regions = (options or {}).get("regions")
    if isinstance(regions, list | tuple) and regions:
        return tuple(str(r) for r in regions)
    return (DEFAULT_REGION,)


def job_quorum(options: Mapping[str, Any] | None) -> str:
    rule = (options or {}).get("quorum")
    return str(rule) if rule else DEFAULT_QUORUM


def need(rule: str, n: int) -> int:
    """How many of ``n`` regions must be ok for the job to be ok."""
    if rule == "any":
        return 1
    if rule == "all":
        return n
    if rule == "majority":
        return n // 2 + 1
    return max(1, min(n, int(rule)))


def decide(rule: str, regions: Sequence[str], ok_by_region: Mapping[str, bool]) -> bool | None:
    """True (ok), False (failed) or None (not decided yet) from the regions heard so far.

    Failed as soon as too few regions are left to reach the quorum: ``all`` fails at the
    first region that fails, ``any`` only when every region failed.
    """
    n = len(regions)
    wanted = need(rule, n)
    ok = sum(1 for r in regions if ok_by_region.get(r) is True)
    failed = sum(1 for r in regions if ok_by_region.get(r) is False)
    if ok >= wanted:
        return True
    if failed > n - wanted:
        return False
    return None


def summary(regions: Sequence[str], ok_by_region: Mapping[str, bool]) -> str:
    """``2/3 ok``: regions ok out of regions asked, what the TUI's region column shows."""
    ok = sum(1 for r in regions if ok_by_region.get(r) is True)
    return f"{ok}/{len(regions)} ok"
