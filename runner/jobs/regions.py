"""Regions as users name them: parsing ``--regions``/``--quorum`` (and the same import keys),
the queue each region's workers consume, and reporting regions that have no live worker.

A job's regions and quorum travel in its options JSON (``regions``, ``quorum``), so every
path that records, copies or re-publishes a job (submit, import, retest, requeue, the API)
carries them without knowing about them; :class:`db.regions.Placement` is the one reading
of them back, :func:`db.regions.split_placement` the one split of raw input. A job that names no region stores neither
key and is checked once, in the default region, from today's queue: a fleet that never names
a region sees no change. The quorum itself is decided by the store (:mod:`db.regions`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from db import DEFAULT_REGION, NO_WORKER, ResultRecord, Store, utcnow
from db.regional import waiting_regions
from db.regions import PLACEMENT_KEYS, QUORUM_WORDS, split_placement
from runner.errors import ConfigError, OptionError

__all__ = [
    "ALL",
    "DEFAULT_REGION",
    "PLACEMENT_KEYS",
    "validate_region",
    "parse_placement",
    "queue_for",
    "report_no_worker",
    "resolve",
    "split_placement",
]

ALL = "all"  # --regions all: every region with a live worker at submit time
MAX_REGIONS = 50
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def validate_region(name: str, what: str = "region") -> str:
    """A usable region name (lowercase letters, digits, '-' and '_'; up to 40), or ConfigError."""
    region = name.strip().lower()
    if not _NAME.match(region) or region == ALL:
        raise ConfigError(f"{what} {name!r} is not a region name: use 1-40 lowercase letters, digits, '-' or '_' "
                          f"(and not {ALL!r})")
    return region


def queue_for(base: str, region: str) -> str:
    """The durable queue a region's workers consume: the base queue for the default region
    (so existing fleets see no change), ``BASE@REGION`` for any other."""
    return base if region == DEFAULT_REGION else f"{base}@{region}"


def parse_placement(regions: Any, quorum: Any, where: str | None = None) -> dict[str, Any]:
    """Validate ``regions`` (``a,b``, a list, or ``all``) and ``quorum`` (``any``, ``all``,
    ``majority`` or a number) as typed by a user or read from an import line.

    Returns the option keys to store: ``{}`` for no region named, ``{"regions": "all"}``
    until :func:`resolve` replaces it. Raises OptionError naming the key and the place.
    """

    def fail(key: str, problem: str) -> OptionError:
        return OptionError(problem, where=f"{where}: {key}" if where else key)

    names: list[str] = []
    if isinstance(regions, str):
        names = [part for part in (p.strip() for p in regions.split(",")) if part]
    elif isinstance(regions, list | tuple):
        if not all(isinstance(r, str) for r in regions):
            raise fail("regions", "expected region names as text")
        names = [r.strip() for r in regions if r.strip()]
    elif regions is not None:
        raise fail("regions", f"expected region names like 'eu-west,us-east' or 'all', got {type(regions).__name__}")
    out: dict[str, Any] = {}
    if names == [ALL]:
        out["regions"] = ALL
    elif names:
        checked: list[str] = []
        for name in names:
            try:
                region = validate_region(name)
            except ConfigError as exc:
                raise fail("regions", str(exc)) from None
            if region not in checked:
                checked.append(region)
        if len(checked) > MAX_REGIONS:
            raise fail("regions", f"at most {MAX_REGIONS} regions")
        out["regions"] = checked
    if quorum is not None and not (isinstance(quorum, str) and not quorum.strip()):
        rule = str(quorum).strip().lower()
        if isinstance(quorum, bool) or not (rule in QUORUM_WORDS or (rule.isdigit() and int(rule) >= 1)):
            raise fail("quorum", f"{quorum!r} is not a quorum: use any, all, majority or a number of regions")
        if not out:
            raise fail("quorum", "a quorum needs --regions (a job without regions is checked in one place)")
        if isinstance(out["regions"], list) and rule.isdigit() and int(rule) > len(out["regions"]):
            raise fail("quorum", f"{rule} regions cannot agree out of {len(out['regions'])}")
        out["quorum"] = rule
    return out


def resolve(placement: Mapping[str, Any], live: Iterable[str], *, immediate: bool) -> dict[str, Any]:
    """Placement with ``all`` replaced by the regions that have a live worker now.

    Embedded (``memory://``) checks run in the submitting process, which is one place: only
    the default region can be asked for there (ConfigError otherwise).
    """
    if not placement:
        return {}
    out = dict(placement)
    if out.get("regions") == ALL:
        found = sorted(set(live)) or [DEFAULT_REGION]
        out["regions"] = [DEFAULT_REGION] if immediate else found
    regions: list[str] = out["regions"]
    if immediate and regions != [DEFAULT_REGION]:
        raise ConfigError("regions need RabbitMQ and a `runner start --region NAME` per region; on the embedded "
                          "broker (memory://) checks run in this process, the default region only")
    rule = out.get("quorum")
    if rule and rule.isdigit() and int(rule) > len(regions):
        raise ConfigError(f"quorum {rule} cannot be met by {len(regions)} region(s) with live workers: "
                          f"{', '.join(regions)}")
    return out


def report_no_worker(store: Store, live: Iterable[str], *, now: datetime | None = None, after_id: int = 0,
                     pages: int = 5, page: int = 1000) -> tuple[int, int]:
    """Store ``no_worker`` for each region of a job past its bound that has no live worker.

    Reads at most ``pages`` pages of waiting jobs from ``after_id`` on, so a backlog of jobs
    whose regions do have workers (still queued) costs each call the same; returns (results
    stored, where the next call goes on: 0 once the end was reached). Safe to run from
    every worker and waiting submitter at once: region results are idempotent, and the
    quorum counts ``no_worker`` as not ok.
    """
    live_set = set(live)
    now = now or utcnow()
    stored = 0
    after = after_id
    for _ in range(pages):
        rows = waiting_regions(store, now=now, after_id=after, limit=page)
        records = [
            ResultRecord(job_id=job_id, outcome=NO_WORKER, ok=False, attempts=0,
                         error=f"no live worker in region {region}", checked_at=now, region=region)
            for job_id, missing in rows for region in missing if region not in live_set
        ]
        if records:
            stored += store.store_results(records)
        if len(rows) < page:
            return stored, 0
        after = rows[-1][0]
    return stored, after

