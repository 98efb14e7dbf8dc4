"""Regions and the quorum rule, as the store applies them when a region's result lands.

A job names the regions that check it (``options["regions"]``; none means the default
region alone) and a quorum rule (``options["quorum"]``: ``any``, ``all``, ``majority`` or a
number). The store decides the job's outcome in the transaction that stores a region's
result, under the job's row lock, so two regions finishing at once cannot both decide.
Kept here, not in runner/, because the decision must be taken where the rows are locked;
runner/jobs/regions.py validates what users type against the same rules.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

DEFAULT_REGION = "default"
QUORUM_WORDS = ("any", "all", "majority")
DEFAULT_QUORUM = "majority"
NO_WORKER = "no_worker"  # the outcome of a region that had no live worker within the bound


PLACEMENT_KEYS = ("regions", "quorum")  # the option keys that say where a job is checked


def split_placement(raw: Mapping[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """Options (as typed, an import line, the API's body or a message) without their
    ``regions``/``quorum`` keys, and those two values as they are (not validated)."""
    rest = {k: v for k, v in raw.items() if k not in PLACEMENT_KEYS}
    return rest, raw.get("regions"), raw.get("quorum")


class Placement(NamedTuple):
    """Where a job is checked and when it is ok: the one reading of the ``regions`` and
    ``quorum`` keys of its stored options (the store's quorum, the publisher's calls per
    region, the worker's done look-up, listings, the no-worker sweep).

    Kept in the options JSON rather than columns of their own: the options are what a
    job's message carries, so a worker knows a call's placement without asking the
    database, and every path that copies a job (requeue, retest, the API) carries them
    without knowing them. No query selects by region, which is what a column would buy.
    """

    regions: tuple[str, ...]  # the default region alone when the job named none
    quorum: str
    named: bool  # the job named regions: one result per region, and its quorum decides

    @classmethod
    def of(cls, options: Mapping[str, Any] | str | None) -> Placement:
        """The placement of a job's options (a dict, or the same as JSON text: a batch has
        few distinct option texts, each read once)."""
        if isinstance(options, str):
            return _placement_of_text(options)
        options = options or {}
        regions = options.get("regions")
        rule = options.get("quorum")
        return cls(tuple(str(r) for r in regions) if isinstance(regions, list | tuple) and regions
                   else (DEFAULT_REGION,),
                   str(rule) if rule else DEFAULT_QUORUM, "regions" in options)


@functools.lru_cache(maxsize=4096)
def _placement_of_text(options: str) -> Placement:
    return Placement.of(json.loads(options))


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
