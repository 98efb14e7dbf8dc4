"""Alerts: changes told to people through Apprise, from the durable outbox (db/alerts.py).

The outbox rows are written in the transaction that records a change; this module sends
them. :class:`AlertSender` is a thread in every ``runner start`` process and in ``runner
serve``: it claims due rows (each row by one process fleet-wide), formats one message per
change or one summary per group, delivers it through Apprise with a bounded timeout, and
settles the rows: sent, retried later with the project's backoff (up to ``max_age``, 24 h),
or failed with the service's reason (``runner alerts list`` shows the last one). It never
runs on a check's thread, so a service that hangs costs the sender its timeout, never a
worker's check slot.

Apprise targets go through the checks' address policy (``--deny-private``; metadata and
link-local addresses always refused) for the services whose URL names the host they
connect to (JSON/XML/form webhooks, ntfy, Gotify, Mattermost, Matrix, email's SMTP
server, ...); the others post to their service's fixed public endpoint.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from db import Store, utcnow
from db import alerts as outbox
from runner.backoff import backoff
from runner.check.policy import AddressPolicy
from runner.errors import InvalidInput
from runner.jobs.when import parse_age
from runner.text import mask_url

log = logging.getLogger("urltester.alerts")

KINDS = outbox.KINDS
DEFAULT_KINDS = outbox.DEFAULT_KINDS
SUMMARY_URLS = 20  # URLs a summary lists; the command it names lists them all
DEFAULT_TIMEOUT = 10.0  # seconds each connect and each read to a service may take
MAX_AGE = 24 * 3600.0  # seconds after which an undelivered row is given up
EMBEDDED_BUDGET = 10.0  # seconds an embedded command spends delivering its alerts before it exits
KEEP_DELIVERED = timedelta(days=31)  # delivered rows kept this long (reminders look back at them)
# Schemas whose URL's host is the host Apprise connects to: judged by the address policy.
HOSTED = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "ntfy", "ntfys", "gotify", "gotifys",
                    "mmost", "mmosts", "matrix", "matrixs", "apprise", "apprises", "rocket", "rockets",
                    "ncloud", "nclouds", "nctalk", "nctalks", "mailto", "mailtos", "workflow", "workflows"})


# ---------------------------------------------------------------------------- input


def parse_kinds(text: str) -> tuple[str, ...]:
    """``--on new_failure,recovered``: the change kinds, each one known; ValueError naming one not."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if not kinds:
        raise ValueError(f"name at least one of {', '.join(KINDS)}")
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"{kind!r} is not a change kind; use {', '.join(KINDS)}")
    return kinds


def parse_reminder(text: str) -> float:
    age = parse_age(text)
    if age is None or age.total_seconds() < 60:
        raise ValueError(f"{text!r} is not an interval of at least a minute, like 30m, 24h or 7d")
    return age.total_seconds()


def plugin_for(target: str) -> Any:
    """Apprise's plugin for a URL; InvalidInput when Apprise does not know it."""
    import apprise

    plugin = apprise.Apprise.instantiate(target) if "://" in target else None
    if plugin is None:
        raise InvalidInput(f"{mask_url(target)!r} is not a notification URL Apprise knows "
                           "(see docs/alerts.md: slack://, discord://, ntfy://, mailto://, json://, …)")
    return plugin


def masked_target(target: str) -> str:
    """The Apprise URL with its secrets masked (passwords, tokens, webhook keys): Apprise's
    own privacy form, which knows where each service keeps them, without its default query."""
    try:
        plugin = plugin_for(target)
    except InvalidInput:
        return mask_url(target.split("?", 1)[0])
    return str(plugin.url(privacy=True)).split("?", 1)[0]


def policy_refusal(plugin: Any, policy: AddressPolicy) -> str | None:
    """Why the address policy refuses this target, or None (also when it cannot be judged
    here: a name that does not resolve fails at delivery with the service's reason)."""
    schemas = {plugin.protocol, plugin.secure_protocol}
    flat = {s for group in schemas for s in ((group,) if isinstance(group, str) else (group or ()))}
    if not flat & HOSTED:
        return None
    host = getattr(plugin, "smtp_host", None) or getattr(plugin, "host", None)
    if not host:
        return None
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        why = policy.refusal(addr)
        if why is not None:
            return f"{host} is refused by the address policy: {addr} is a {why}"
    return None


# ---------------------------------------------------------------------------- delivery


class _Capture(logging.Handler):
    """Apprise's warnings on this thread: the service's reason when a delivery fails."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


def deliver(target: str, title: str, body: str, *, policy: AddressPolicy,
            timeout: float = DEFAULT_TIMEOUT) -> tuple[str | None, bool]:
    """Send one message: (None, _) when delivered, else (the reason, whether to retry)."""
    try:
        plugin = plugin_for(target)
    except InvalidInput as exc:
        return str(exc), False
    refused = policy_refusal(plugin, policy)
    if refused:
        return refused, False
    plugin.socket_connect_timeout = timeout
    plugin.socket_read_timeout = timeout
    capture = _Capture()
    logger = logging.getLogger("apprise")
    logger.addHandler(capture)
    try:
        ok = plugin.notify(body=body, title=title)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug is one failed delivery, not a dead sender
        return f"{type(exc).__name__}: {exc}", True
    finally:
        logger.removeHandler(capture)
    if ok:
        return None, False
    reason = "; ".join(dict.fromkeys(line.strip() for line in capture.lines if line.strip()))
    return mask_url(reason)[:500] or "the service did not accept the message", True


# ---------------------------------------------------------------------------- messages


def _arrow(payload: dict[str, Any]) -> str:
    return f"{payload.get('from') or 'none'} → {payload.get('to')}"


def format_change(payload: dict[str, Any]) -> tuple[str, str]:
    """One change's title and body: the URL (password masked), from → to, the outcome,
    status code, error, time and batch."""
    url = mask_url(payload["url"])
    title = f"urltester: {payload['change']}: {url}"
    lines = [f"URL: {url}", f"Change: {payload['change']} ({_arrow(payload)})", f"Outcome: {payload.get('outcome')}"]
    if payload.get("status_code") is not None:
        lines.append(f"Status code: {payload['status_code']}")
    if payload.get("error"):
        lines.append(f"Error: {mask_url(str(payload['error']))}")
    lines.append(f"Time: {payload.get('at')}")
    lines.append(f"Batch: {payload.get('batch') or '(none)'}")
    if payload.get("regions"):
        lines.append(f"Regions: {', '.join(payload['regions'])}")
    lines.append(f"Job: {payload.get('job_id')}")
    return title, "\n".join(lines)


def format_summary(claim: outbox.Claim) -> tuple[str, str]:
    """One message for many changes: counts per kind, the first URLs, the command for all."""
    payloads = claim.payloads
    counts = Tally(p["change"] for p in payloads)
    batch = next((p.get("batch") for p in payloads if p.get("batch")), None)
    where = f"batch {batch}" if batch else "the last minute"
    more = "" if len(payloads) == claim.group_total else f" ({claim.group_total} in all)"
    title = f"urltester: {len(payloads)} changes in {where}{more}"
    lines = [", ".join(f"{kind}: {counts[kind]}" for kind in KINDS if counts[kind]), ""]
    for p in payloads[:SUMMARY_URLS]:
        lines.append(f"{p['change']}: {mask_url(p['url'])} ({_arrow(p)}, {p.get('outcome')}"
                     f"{'' if p.get('status_code') is None else ' ' + str(p['status_code'])})")
    if len(payloads) > SUMMARY_URLS:
        lines.append(f"… and {len(payloads) - SUMMARY_URLS} more")
    first = min((p.get("at") or "" for p in payloads), default="")
    lines += ["", f"Since: {first}",
              "All of them: " + (f"runner changes --batch {batch}" if batch else "runner changes --since 10m")]
    return title, "\n".join(lines)


# ---------------------------------------------------------------------------- the sender


def retry_wait(attempt: int, initial: float, maximum: float) -> float:
    """Seconds before delivery attempt ``attempt + 1``: the project's backoff (tenacity)."""
    from tenacity import RetryCallState

    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]  # backoff reads only attempt_number
    state.attempt_number = attempt
    return float(backoff(initial, maximum)(state))


class AlertSender:
    """The outbox's sender thread (see the module's docstring). Time is injectable (``now``)."""

    def __init__(self, store: Store, policy: AddressPolicy, *, worker: str, poll: float = 0.25,
                 lease: float = 120.0, hold: float = 300.0, timeout: float = DEFAULT_TIMEOUT,
                 max_age: float = MAX_AGE, retry_initial: float = 30.0, retry_max: float = 3600.0,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.store, self.policy, self.worker = store, policy, worker
        self.poll, self.lease, self.hold, self.timeout = poll, lease, hold, timeout
        self.max_age, self.retry_initial, self.retry_max, self.now = max_age, retry_initial, retry_max, now
        # A lease shorter than a delivery could take would let a second sender resend.
        self.lease = max(lease, 3 * timeout + 1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._depth_at = 0.0
        self._pruned_at = 0.0

    def start(self) -> AlertSender:
        self._thread = threading.Thread(target=self._loop, name="alert-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.timeout * 3 + 5)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                busy = self.run_once()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the database away or a bug: log it, keep going
                failures += 1
                if failures == 1 or failures % 20 == 0:  # not a line every poll while it lasts
                    log.warning("alert sender: %s: %s", type(exc).__name__, exc)
                self._stop.wait(min(30.0, self.poll * 2 ** min(failures, 8)))
                continue
            if not busy:
                self._stop.wait(self.poll)

    def run_once(self) -> int:
        """Claim what is due, deliver it, settle it; the messages attempted."""
        from runner import metrics

        d = self.store.dialect
        claims = outbox.claim(d, self.worker, now=self.now(), lease=self.lease, hold=self.hold)
        for c in claims:
            title, body = format_summary(c) if c.summary else format_change(c.payloads[0])
            reason, transient = deliver(c.alert.target, title, body, policy=self.policy, timeout=self.timeout)
            now = self.now()
            if reason is None:
                outbox.settle(d, self.worker, c, now=now)
                metrics.ALERTS_SENT.labels(c.alert.name, "sent").inc()
            elif transient and (now - c.first_at).total_seconds() < self.max_age:
                retry_at = now + timedelta(seconds=retry_wait(c.attempts + 1, self.retry_initial, self.retry_max))
                outbox.settle(d, self.worker, c, error=reason, retry_at=retry_at, now=now)
                metrics.ALERTS_SENT.labels(c.alert.name, "retry").inc()
                log.info("alert %s not delivered (%s); next try at %s", c.alert.name, reason, retry_at.isoformat())
            else:
                outbox.settle(d, self.worker, c, error=reason, now=now)
                metrics.ALERTS_SENT.labels(c.alert.name, "failed").inc()
                log.warning("alert %s given up: %s", c.alert.name, reason)
        if claims or time.monotonic() - self._depth_at > 5:
            self._depth_at = time.monotonic()
            metrics.ALERT_OUTBOX.set(outbox.outbox_depth(d))
        if time.monotonic() - self._pruned_at > 3600:  # hourly, a bounded delete at a time
            self._pruned_at = time.monotonic()
            outbox.forget_delivered(d, self.now() - KEEP_DELIVERED)
        return len(claims)


def start_sender(store: Store, settings: Any, *, worker: str) -> AlertSender:
    """The sender of a ``runner start`` process or of ``runner serve``, with the settings'
    address policy."""
    policy = AddressPolicy(deny_private=settings.deny_private, allow=settings.allow_networks)
    return AlertSender(store, policy, worker=worker).start()


def deliver_before_exit(store: Store, settings: Any, *, worker: str, budget: float = EMBEDDED_BUDGET) -> list[str]:
    """The embedded default (checks in this process, no ``runner start``): deliver what the
    outbox holds before the command exits, for at most ``budget`` seconds (each delivery's
    timeout is cut to the budget). Returns, per alert with changes still untold, one line
    saying so (the rows stay in the outbox: the next command that checks here, the TUI or
    ``runner serve`` delivers them); empty when all is told.

    The sender runs on a thread of its own, so a service that hangs costs the budget, not
    more. Rows being delivered when the budget ends stay claimed until their lease runs out
    and are then delivered by whichever sender comes next (at least once, as ever).
    """
    d = store.dialect
    if outbox.outbox_depth(d) == 0:  # no alert, or all told: one count
        return []
    policy = AddressPolicy(deny_private=settings.deny_private, allow=settings.allow_networks)
    sender = AlertSender(store, policy, worker=worker, timeout=min(DEFAULT_TIMEOUT, budget))
    deadline = time.monotonic() + budget

    def drain() -> None:
        try:
            while time.monotonic() < deadline and not sender._stop.is_set() and sender.run_once():
                pass
        except Exception as exc:  # noqa: BLE001 - said below as what is left in the outbox
            if not sender._stop.is_set():
                log.warning("alert sender: %s: %s", type(exc).__name__, exc)

    thread = threading.Thread(target=drain, name="alert-sender", daemon=True)
    thread.start()
    thread.join(budget)
    sender._stop.set()  # past the budget: a delivery still on its way is left to its lease
    late = thread.is_alive()
    lines = []
    for alert in outbox.list_alerts(d):
        if alert.pending:
            why = f" (last error: {alert.last_error})" if alert.last_error else ""
            if late and not why:
                why = f" (not delivered within {budget:g} s)"
            lines.append(f"alert {alert.name}: {alert.pending} change{'s' if alert.pending != 1 else ''} not told "
                         f"yet{why}; they stay in the outbox, for the next check run here, the TUI or "
                         "`runner serve` to deliver (runner alerts list)")
    return lines


# ---------------------------------------------------------------------------- commands


def add(store: Store, name: str, target: str, *, kinds: Sequence[str], batch: str | None, contains: str | None,
        urls: Sequence[str] | None, reminder_s: float | None, min_regions: int | None,
        policy: AddressPolicy) -> outbox.Alert:
    try:
        plugin = plugin_for(target)
    except InvalidInput as exc:
        raise InvalidInput(f"APPRISE_URL: {exc}") from None
    refused = policy_refusal(plugin, policy)
    if refused:
        raise InvalidInput(f"APPRISE_URL: {refused}")
    return outbox.add_alert(store.dialect, name, target, kinds=kinds, batch=batch, contains=contains, urls=urls,
                            reminder_s=reminder_s, min_regions=min_regions)


def send_test(store: Store, name: str, *, policy: AddressPolicy) -> str | None:
    """Send a test message now; None when delivered, else the service's reason."""
    alert = outbox.get_alert(store.dialect, name)
    if alert is None:
        raise LookupError(name)
    reason, _ = deliver(alert.target, f"urltester: test message for alert {name}",
                        f"This is a test of the alert {name!r}: it would tell {', '.join(alert.kinds)}.",
                        policy=policy)
    return reason
