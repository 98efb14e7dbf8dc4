"""Alerts and their outbox: which changes are told to whom, and what is still to send.

Two halves. :func:`queue_alerts` runs *inside* the transaction that records a result and
its changes (the history's ``_on_changes`` hook): it matches each change against the
configured alerts and inserts one outbox row per (alert, change), so a change is never
recorded without its alert, nor an alert sent for a change that rolled back. The sender
(:mod:`runner.jobs.alerts`) then claims due rows with :func:`claim`, delivers them and
settles them with :func:`settle`.

Claims. A row is due when its state is ``pending`` or ``sending`` and ``next_attempt_at``
has passed: claiming sets ``sending`` with ``next_attempt_at`` at the lease's end, so the
rows of a sender killed mid-delivery fall due again when the lease runs out, and another
process delivers them. Claims take the rows ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), under
a per-group advisory lock, so each row is claimed by one process fleet-wide and a group
(one batch, or one minute of single submits) is claimed whole, never split between two
senders (which would send two summaries).

The summary rule (:func:`claim` decides, the sender formats): a group whose changes for one
alert number more than :data:`SUMMARY_OVER` is one message. A batch's group waits while
the batch still has jobs queued or running (at most ``hold`` seconds since its oldest row),
so a nightly import's 2,000 failures are one message at its end, while a single URL's
batch is told at once. A group of single submits (no batch) is told change by change up
to :data:`SUMMARY_OVER`, the rest of its minute as one summary when the minute is over.
"""

from __future__ import annotations

import time
import weakref
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .dialects import Dialect
from .errors import StoreError
from .models import Change, utcnow

KINDS = ("new_failure", "recovered", "new", "still_failing", "slower")
DEFAULT_KINDS = ("new_failure", "recovered")
SUMMARY_OVER = 10  # more changes than this in one group: one summary message
WINDOW = 60  # seconds: the group of changes of jobs without a batch
CACHE_SECONDS = 2.0  # alerts are re-read this often by each process (add/remove reach writers)
RECHECK = 2.0  # seconds between looks at a batch still running


class AlertNameTaken(StoreError):
    """An alert already has this name."""


@dataclass(frozen=True)
class Alert:
    id: int
    name: str
    target: str  # the Apprise URL, secrets and all: never shown (runner.jobs.alerts masks it)
    kinds: tuple[str, ...]
    batch: str | None = None
    contains: str | None = None
    has_urls: bool = False
    reminder_s: float | None = None
    min_regions: int | None = None
    created_at: datetime | None = None
    last_sent_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    pending: int = 0  # outbox rows not yet delivered (list_alerts only)
    failed: int = 0  # outbox rows given up on (list_alerts only)


@dataclass(frozen=True)
class Claim:
    """Outbox rows one sender now owns: one message, or (``summary``) one for all of them."""

    alert: Alert
    group: str
    ids: list[int]
    payloads: list[dict[str, Any]]
    first_at: datetime  # the oldest row's creation: retries stop 24 h after it
    attempts: int  # deliveries tried before this one (the most among the rows)
    summary: bool
    group_total: int  # rows the group has had in all (the summary says "N of T")


@dataclass(frozen=True)
class _Matcher:
    """An alert's in-memory tests, made once per cache refresh (not once per change)."""

    alert: Alert
    contains: str | None  # lower-cased


@dataclass
class _Cached:
    until: float = 0.0
    alerts: list[Alert] = field(default_factory=list)
    by_kind: dict[str, list[_Matcher]] = field(default_factory=dict)  # change kind -> the alerts telling it


def _cached(alerts: list[Alert], until: float) -> _Cached:
    by_kind: dict[str, list[_Matcher]] = {}
    for alert in alerts:
        matcher = _Matcher(alert, alert.contains.lower() if alert.contains is not None else None)
        for kind in dict.fromkeys(alert.kinds):
            by_kind.setdefault(kind, []).append(matcher)
    return _Cached(until, alerts, by_kind)


_CACHE: weakref.WeakKeyDictionary[Dialect, _Cached] = weakref.WeakKeyDictionary()
_COLUMNS = ("id, name, target, kinds, batch, contains, has_urls, reminder_s, min_regions, created_at, "
            "last_sent_at, last_error, last_error_at")
_OUTBOX_INSERT = ("INSERT INTO alert_outbox (alert_id, grp, url, change, job_id, region, payload, state, created_at, "
                  "next_attempt_at) VALUES ")


def _alert(d: Dialect, row: Sequence[Any], pending: int = 0, failed: int = 0) -> Alert:
    return Alert(row[0], row[1], row[2], tuple(k for k in row[3].split(",") if k), row[4], row[5], bool(row[6]),
                 row[7], row[8], d.parse_ts(row[9]), d.parse_ts(row[10]), row[11], d.parse_ts(row[12]),
                 pending, failed)


# ---------------------------------------------------------------------------- configuration


def add_alert(d: Dialect, name: str, target: str, *, kinds: Iterable[str] = DEFAULT_KINDS,
              batch: str | None = None, contains: str | None = None, urls: Sequence[str] | None = None,
              reminder_s: float | None = None, min_regions: int | None = None,
              now: datetime | None = None) -> Alert:
    with d.transaction() as cur:
        cur.execute("SELECT 1 FROM alerts WHERE name = %s", (name,))
        if cur.fetchone():
            raise AlertNameTaken(f"an alert named {name!r} exists; remove it first or pick another name")
        cur.execute(
            "INSERT INTO alerts (name, target, kinds, batch, contains, has_urls, reminder_s, min_regions, created_at) "
            f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (name, target, ",".join(kinds), batch, contains, d.boolean(urls is not None), reminder_s, min_regions,
             d.ts(now or utcnow())),
        )
        alert = _alert(d, cur.fetchone())
        if urls:
            rows = [(alert.id, u) for u in dict.fromkeys(urls)]
            d.insert_returning(cur, "INSERT INTO alert_urls (alert_id, url) VALUES ", rows,
                               " ON CONFLICT DO NOTHING RETURNING url")
    _CACHE.pop(d, None)
    return alert


def remove_alert(d: Dialect, name: str) -> bool:
    """Remove an alert and its undelivered outbox rows; False when there is none."""
    with d.transaction() as cur:
        cur.execute("DELETE FROM alerts WHERE name = %s RETURNING id", (name,))
        row = cur.fetchone()
        if row is not None:
            cur.execute("DELETE FROM alert_outbox WHERE alert_id = %s", (row[0],))
    _CACHE.pop(d, None)
    return row is not None


def get_alert(d: Dialect, name: str) -> Alert | None:
    with d.transaction(write=False) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM alerts WHERE name = %s", (name,))
        row = cur.fetchone()
    return _alert(d, row) if row else None


def list_alerts(d: Dialect) -> list[Alert]:
    """Every alert with its outbox's undelivered and given-up counts."""
    with d.transaction(write=False) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM alerts ORDER BY name")
        rows = cur.fetchall()
        cur.execute("SELECT alert_id, state, count(*) FROM alert_outbox "
                    "WHERE state IN ('pending', 'sending', 'failed') GROUP BY alert_id, state")
        counts: dict[tuple[int, str], int] = {}
        for alert_id, state, n in cur.fetchall():
            key = (alert_id, "failed" if state == "failed" else "pending")
            counts[key] = counts.get(key, 0) + n
    return [_alert(d, r, counts.get((r[0], "pending"), 0), counts.get((r[0], "failed"), 0)) for r in rows]


def _active(cur: Any, d: Dialect, clock: float) -> _Cached:
    cached = _CACHE.get(d)
    if cached is not None and cached.until > clock:
        return cached
    cur.execute(f"SELECT {_COLUMNS} FROM alerts ORDER BY id")
    cached = _cached([_alert(d, r) for r in cur.fetchall()], clock + CACHE_SECONDS)
    _CACHE[d] = cached
    return cached


# ---------------------------------------------------------------------------- queueing


def queue_alerts(cur: Any, d: Dialect, changes: Sequence[Change], *, now: datetime | None = None) -> int:
    """Outbox rows for the alerts these changes match, in the caller's transaction.

    Cheap when no alert is configured (one cached read every few seconds per process), and
    when none tells these kinds of change (a dictionary look-up per change). What matches is
    found in memory first (kind, URL text); the batches' names and ``--state-of`` lists are
    read once per call, and every outbox row of the call is one INSERT. Returns the rows
    inserted.
    """
    if not changes:
        return 0
    by_kind = _active(cur, d, time.monotonic()).by_kind
    if not by_kind:
        return 0
    pairs: list[tuple[_Matcher, Change]] = []
    for ch in changes:
        matchers = by_kind.get(ch.change)
        if not matchers:
            continue
        lowered = None
        for m in matchers:
            if m.contains is not None:
                if lowered is None:
                    lowered = ch.url.lower()
                if m.contains not in lowered:
                    continue
            pairs.append((m, ch))
    if not pairs:
        return 0
    now = now or utcnow()
    names = _batch_names(cur, d, {ch.batch_id for _, ch in pairs if ch.batch_id is not None})
    listed = _listed(cur, d, [(m.alert, ch.url) for m, ch in pairs if m.alert.has_urls])
    at, minute = d.ts(now), f"w:{int(now.timestamp()) // WINDOW}"
    reminded: set[tuple[int, str]] = set()  # a still_failing told in this call: the URL's reminder is not due
    rows: list[tuple[Any, ...]] = []
    for m, ch in pairs:
        alert = m.alert
        batch = names.get(ch.batch_id) if ch.batch_id is not None else None
        if alert.batch is not None and batch != alert.batch:
            continue
        if alert.has_urls and (alert.id, ch.url) not in listed:
            continue
        regions: list[str] = []
        if alert.min_regions is not None and ch.region is None:  # the quorum of a job that named regions
            regions = _agreeing(cur, d, ch)
            if len(regions) < alert.min_regions:
                continue
        if ch.change == "still_failing":
            if (alert.id, ch.url) in reminded or not _reminder_due(cur, d, alert, ch.url, now):
                continue
            reminded.add((alert.id, ch.url))
        payload: dict[str, Any] = {
            "url": ch.url, "change": ch.change, "from": ch.from_state, "to": ch.to_state, "at": ch.at.isoformat(),
            "job_id": ch.job_id, "batch_id": ch.batch_id, "batch": batch, "outcome": ch.outcome,
            "status_code": ch.status_code, "error": ch.error, "region": ch.region}
        if regions:
            payload["regions"] = regions
        group = f"b:{ch.batch_id}" if ch.batch_id is not None else minute
        rows.append((alert.id, group, ch.url, ch.change, ch.job_id, ch.region, d.json(payload), "pending", at, at))
    if len(rows) == 1:  # a store batch of one result (a quiet worker): no execute_values' overhead (~30 µs)
        cur.execute(_OUTBOX_INSERT + "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", rows[0])
    elif rows:
        d.insert_returning(cur, _OUTBOX_INSERT, rows, " RETURNING id")  # one statement (PostgreSQL)
    return len(rows)


def _batch_names(cur: Any, d: Dialect, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    test, params = d.any_of("id", sorted(ids))
    cur.execute(f"SELECT id, name FROM batches WHERE {test}", params)
    return {row[0]: row[1] for row in cur.fetchall()}


def _listed(cur: Any, d: Dialect, wanted: Sequence[tuple[Alert, str]]) -> set[tuple[int, str]]:
    """Which (alert id, URL) of ``wanted`` are in their alert's ``--state-of`` list."""
    by_alert: dict[int, set[str]] = {}
    for alert, url in wanted:
        by_alert.setdefault(alert.id, set()).add(url)
    found: set[tuple[int, str]] = set()
    for alert_id, urls in by_alert.items():
        test, params = d.any_of("url", sorted(urls))
        cur.execute(f"SELECT url FROM alert_urls WHERE alert_id = %s AND {test}", (alert_id, *params))
        found.update((alert_id, row[0]) for row in cur.fetchall())
    return found


def _agreeing(cur: Any, d: Dialect, ch: Change) -> list[str]:
    """The regions whose result for this job agrees with the change (failed for a change to
    failing, passed for any other), among those in when its quorum decided."""
    cur.execute("SELECT region FROM region_results WHERE job_id = %s AND ok = %s ORDER BY region",
                (ch.job_id, d.boolean(ch.to_state != "failing")))
    return [r[0] for r in cur.fetchall()]


def _reminder_due(cur: Any, d: Dialect, alert: Alert, url: str, now: datetime) -> bool:
    """still_failing is a reminder: told when nothing about this URL's failure was told
    for --reminder (default 24 h)."""
    cur.execute("SELECT max(created_at) FROM alert_outbox WHERE alert_id = %s AND url = %s "
                "AND change IN ('new_failure', 'still_failing')", (alert.id, url))
    last = d.parse_ts(cur.fetchone()[0])
    return last is None or now - last >= timedelta(seconds=alert.reminder_s or 86400)


# ---------------------------------------------------------------------------- sending


def _group_key(alert_id: int, group: str) -> int:
    # A 63-bit key for the advisory lock: a fixed prefix and the crc of (alert, group).
    return (0x616C << 40) | (alert_id & 0xFF) << 32 | zlib.crc32(f"{alert_id}:{group}".encode())


def claim(d: Dialect, worker: str, *, now: datetime | None = None, lease: float = 120.0, hold: float = 300.0,
          groups: int = 10, max_rows: int = 10000) -> list[Claim]:
    """Claim what is due to send now, group by group (see the module's docstring)."""
    now = now or utcnow()
    with d.transaction(write=False) as cur:
        cur.execute("SELECT alert_id, grp, min(created_at) FROM alert_outbox "
                    "WHERE state IN ('pending', 'sending') AND next_attempt_at <= %s "
                    "GROUP BY alert_id, grp ORDER BY min(created_at) LIMIT %s", (d.ts(now), groups))
        due = cur.fetchall()
    claims: list[Claim] = []
    for alert_id, group, _ in due:
        with d.transaction() as cur:
            if not d.try_lock(cur, _group_key(alert_id, group)):
                continue  # another sender has this group now
            cur.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
            row = cur.fetchone()
            if row is None:  # queued by a writer that had not yet heard of its removal
                cur.execute("DELETE FROM alert_outbox WHERE alert_id = %s", (alert_id,))
                continue
            alert = _alert(d, row)
            cur.execute("SELECT count(*), min(CASE WHEN state IN ('pending', 'sending') THEN created_at END) "
                        "FROM alert_outbox WHERE alert_id = %s AND grp = %s",
                        (alert_id, group))
            total, oldest = cur.fetchone()
            oldest = d.parse_ts(oldest)
            if oldest is None:
                continue
            summary = total > SUMMARY_OVER
            recheck = _ready(cur, group, summary, oldest, now, hold)
            if recheck is not None:
                # Not yet: out of the due set until then, so that groups behind it are served.
                cur.execute("UPDATE alert_outbox SET next_attempt_at = %s WHERE alert_id = %s AND grp = %s "
                            "AND state IN ('pending', 'sending') AND next_attempt_at <= %s",
                            (d.ts(recheck), alert_id, group, d.ts(now)))
                continue
            cur.execute(
                "UPDATE alert_outbox SET state = 'sending', claimed_by = %s, next_attempt_at = %s "
                "WHERE id IN (SELECT id FROM alert_outbox WHERE alert_id = %s AND grp = %s "
                f"AND state IN ('pending', 'sending') AND next_attempt_at <= %s ORDER BY id LIMIT %s{d.skip_locked}) "
                "RETURNING id, payload, created_at, attempts",
                (worker, d.ts(now + timedelta(seconds=lease)), alert_id, group, d.ts(now), max_rows),
            )
            rows = sorted(cur.fetchall())
        if not rows:
            continue
        if summary:
            claims.append(Claim(alert, group, [r[0] for r in rows], [d.parse_json(r[1]) for r in rows],
                                min(d.parse_ts(r[2]) for r in rows), max(r[3] for r in rows), True, total))
        else:
            claims.extend(Claim(alert, group, [r[0]], [d.parse_json(r[1])], d.parse_ts(r[2]), r[3], False, total)
                          for r in rows)
    return claims


def _ready(cur: Any, group: str, summary: bool, oldest: datetime, now: datetime, hold: float) -> datetime | None:
    """None when the group is to be told now, else when to look again."""
    kind, _, key = group.partition(":")
    if kind == "w":  # single submits: at once while few; the rest of the minute as one summary
        end = (int(key) + 1) * WINDOW
        return None if not summary or now.timestamp() >= end else datetime.fromtimestamp(end, now.tzinfo)
    # A batch: wait while it still has jobs to check (bounded by hold), then tell it all.
    if (now - oldest).total_seconds() >= hold:
        return None
    cur.execute("SELECT 1 FROM jobs WHERE batch_id = %s AND state IN ('queued', 'running') LIMIT 1", (int(key),))
    if cur.fetchone() is None:
        return None
    return min(now + timedelta(seconds=RECHECK), oldest + timedelta(seconds=hold))


def settle(d: Dialect, worker: str, claim_: Claim, *, error: str | None = None, retry_at: datetime | None = None,
           now: datetime | None = None) -> None:
    """Delivered (``error`` None), to retry at ``retry_at``, or given up (``error`` and no
    ``retry_at``). Only rows this worker still holds are touched: a lease that ran out and
    was claimed again belongs to the new claimer."""
    now = now or utcnow()
    test, params = d.any_of("id", claim_.ids)
    with d.transaction() as cur:
        if error is None:
            cur.execute(f"UPDATE alert_outbox SET state = 'sent', sent_at = %s, error = NULL, attempts = attempts + 1 "
                        f"WHERE {test} AND claimed_by = %s AND state = 'sending'", (d.ts(now), *params, worker))
            cur.execute("UPDATE alerts SET last_sent_at = %s WHERE id = %s", (d.ts(now), claim_.alert.id))
            return
        state, when = ("pending", retry_at) if retry_at is not None else ("failed", now)
        cur.execute(f"UPDATE alert_outbox SET state = %s, next_attempt_at = %s, error = %s, attempts = attempts + 1 "
                    f"WHERE {test} AND claimed_by = %s AND state = 'sending'",
                    (state, d.ts(when), error, *params, worker))
        cur.execute("UPDATE alerts SET last_error = %s, last_error_at = %s WHERE id = %s",
                    (error, d.ts(now), claim_.alert.id))


def forget_delivered(d: Dialect, before: datetime, *, limit: int = 10000) -> int:
    """Delete up to ``limit`` sent or given-up rows created before ``before`` (the outbox is
    a queue, not a history: url_changes keeps the story); how many went."""
    with d.transaction() as cur:
        cur.execute("DELETE FROM alert_outbox WHERE id IN (SELECT id FROM alert_outbox "
                    "WHERE state IN ('sent', 'failed') AND created_at < %s ORDER BY id LIMIT %s)",
                    (d.ts(before), limit))
        return int(cur.rowcount)


def outbox_depth(d: Dialect) -> int:
    """Rows waiting to be delivered (pending or being sent), fleet-wide."""
    with d.transaction(write=False) as cur:
        cur.execute("SELECT count(*) FROM alert_outbox WHERE state IN ('pending', 'sending')")
        return int(cur.fetchone()[0])


def outbox_rows(d: Dialect, alert_name: str | None = None) -> list[tuple[int, str, str, str, int]]:
    """(id, url, change, state, attempts) of the outbox, oldest first: for tests and doctor."""
    where, params = ("", ()) if alert_name is None else (" WHERE a.name = %s", (alert_name,))
    with d.transaction(write=False) as cur:
        cur.execute("SELECT o.id, o.url, o.change, o.state, o.attempts FROM alert_outbox o "
                    f"JOIN alerts a ON a.id = o.alert_id{where} ORDER BY o.id", params)
        return [tuple(r) for r in cur.fetchall()]
