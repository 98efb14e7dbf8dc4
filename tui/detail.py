"""DetailScreen: everything one job's result holds, read once in a worker thread.

Each region's result (a job that named regions), timing waterfall, redirect chain, TLS certificate, response headers and
the error in full. Every value is server- or user-supplied text, so each goes through ``printable`` and is
appended to :class:`~tui.styled.Styled` as plain text (never markup), in the theme's colours.
"""

from __future__ import annotations

import asyncio
from datetime import tzinfo
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, Sparkline, Static

from db import DEFAULT_REGION, JobView, ResultRecord, StoreUnavailable
from db.crawls import referrers_of
from db.regional import region_results
from db.regions import summary as region_summary
from runner.jobs.report import state_label
from runner.text import mask_url, printable

from .columns import human_bytes, human_ms, state_class
from .styled import FAILED, MUTED, OK, WARNING, Styled, styled
from .url_history import History, history_text, load_history
from .waterfall import Waterfall

STATE_STYLES = {"ok": f"bold {OK}", "failed": f"bold {FAILED}", "queued": MUTED, "running": f"bold {WARNING}",
                "cancelled": MUTED}


def _kv(text: Styled, key: str, value: Any, style: str = "") -> None:
    if value is None or value == "" or value == []:
        return
    text.append(f"  {key:<14}", "dim")
    text.append(printable(value), style)
    text.append("\n")


def summary(job: JobView, tz: tzinfo | None) -> Content:
    d = job.detail or {}
    text = Styled()
    text.append(state_label(job), STATE_STYLES.get(state_class(job), ""))
    text.append("  ")
    text.append(printable(mask_url(job.url)), "bold")
    text.append("\n")
    status = None
    if job.status_code is not None:
        status = " ".join(str(x) for x in (job.status_code, d.get("reason"), d.get("http_version")) if x)
    _kv(text, "job", f"#{job.id}" + (f" · batch {job.batch}" if job.batch else ""))
    _kv(text, "status", status)
    _kv(text, "total", human_ms(job.total_ms) if job.total_ms is not None else None)
    if job.attempts and job.attempts > 1:
        _kv(text, "attempts", f"{job.attempts}" + (" (flaky: passed after a retry)" if d.get("flaky") else ""))
    _kv(text, "final URL", mask_url(job.final_url) if job.final_url and job.final_url != job.url else None)
    _kv(text, "address", d.get("ip"))
    _kv(text, "content", " · ".join(x for x in (job.content_type, human_bytes(job.bytes)) if x) or None)
    _kv(text, "title", job.title)
    _kv(text, "submitted", _when(job.submitted_at, tz))
    _kv(text, "checked", _when(job.checked_at, tz))
    if job.state == "queued" and job.publish_error:
        _kv(text, "not sent", job.publish_error, FAILED)
    return text.content


def _when(value: Any, tz: tzinfo | None) -> str | None:
    if value is None:
        return None
    shown: str = value.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return shown


def error_text(job: JobView) -> Content | None:
    d = job.detail or {}
    if not job.error and not d.get("retried") and not d.get("failed_conditions"):
        return None
    text = Styled()
    if job.error:
        text.append(printable(job.error), FAILED)
        text.append("\n")
    for cond in d.get("failed_conditions") or []:
        text.append("  ✗ condition ", "dim")
        text.append(printable(cond))
        text.append("\n")
    for n, earlier in enumerate(d.get("retried") or [], 1):
        text.append(f"  attempt {n}: ", "dim")
        text.append(printable(earlier.get("outcome")))
        if earlier.get("error"):
            text.append(" — ")
            text.append(printable(earlier.get("error")))
        text.append("\n")
    return text.content


def redirects_text(job: JobView) -> Content | None:
    d = job.detail or {}
    chain = d.get("redirects") or []
    if not chain:
        return None
    text = Styled()
    text.append("  ")
    text.append(printable(mask_url(d.get("url") or job.url)))
    text.append("\n")
    for hop in chain:
        text.append(f"  {printable(hop.get('status')):>3} → ", WARNING)
        text.append(printable(hop.get("url")))
        text.append("\n")
    return text.content


def _not_verified(job: JobView) -> str:
    """Why the certificate was not verified: the check was told not to (--insecure), or
    verification failed (the TLS error says how: "self-signed certificate", ...)."""
    if (job.options or {}).get("insecure"):
        return "no: insecure (checked with --insecure)"
    error = job.error or ""
    reason = error.removeprefix("TLS: ") if job.outcome == "tls_error" and error.startswith("TLS: ") else ""
    return f"not verified: {reason}" if reason else "not verified"


def referrers_text(job: JobView) -> Content | None:
    """A crawl's: the pages that link to this URL, with the link's text (where to fix it)."""
    if not job.referrers:
        return None
    text = Styled()
    for referrer in job.referrers:
        text.append("  ")
        text.append(printable(mask_url(referrer.get("url") or "")))
        if referrer.get("text"):
            text.append(f'  "{printable(referrer["text"])}"', MUTED)
        text.append("\n")
    return text.content


def tls_text(job: JobView) -> Content | None:
    tls = (job.detail or {}).get("tls")
    if not tls:
        return None
    text = Styled()
    _kv(text, "protocol", " · ".join(str(x) for x in (tls.get("protocol"), tls.get("cipher"), tls.get("alpn")) if x))
    verified = tls.get("verified")
    _kv(text, "verified", None if verified is None else ("yes" if verified else _not_verified(job)),
        OK if verified else FAILED)
    _kv(text, "subject", tls.get("subject"))
    _kv(text, "issuer", tls.get("issuer"))
    san = tls.get("san") or []
    _kv(text, "names", ", ".join(str(s) for s in san[:20]) + (f" (+{len(san) - 20})" if len(san) > 20 else ""))
    _kv(text, "valid", " → ".join(str(x) for x in (tls.get("not_before"), tls.get("not_after")) if x))
    days = tls.get("days_left")
    if days is not None:
        _kv(text, "expires in", f"{days} days", FAILED if days < 14 else "")
    chain = tls.get("chain") or []
    for n, cert in enumerate(chain[1:], 2):
        _kv(text, f"chain {n}", f"{cert.get('subject')} (by {cert.get('issuer')}, until {cert.get('not_after')})")
    return text.content


def headers_text(job: JobView) -> Content | None:
    headers = (job.detail or {}).get("headers") or {}
    if not headers:
        return None
    text = Styled()
    for name, value in headers.items():
        text.append(f"  {printable(name, 60)}: ", "bold")
        text.append(printable(value, 2000))
        text.append("\n")
    return text.content


REGION_PHASES = (("dns_ms", "dns"), ("connect_ms", "connect"), ("tls_ms", "tls"), ("ttfb_ms", "wait"),
                 ("transfer_ms", "transfer"))


def regions_text(job: JobView, results: list[ResultRecord]) -> Content | None:
    """Each region's result on a line, its timing phases in columns side by side, so a
    region that is slow (or failing) stands out. None for a job of the default region alone."""
    if job.regions == (DEFAULT_REGION,) and all(r.region == DEFAULT_REGION for r in results):
        return None
    heard = {r.region: r for r in results}
    text = Styled()
    text.append(f"  quorum {printable(job.quorum)} of {len(job.regions)}: {summary_of(job.regions, heard)}\n", MUTED)
    text.append(f"  {'region':<16}{'outcome':<20}{'code':>5}{'total':>9}", MUTED)
    for _, name in REGION_PHASES:
        text.append(f"{name:>9}", MUTED)
    text.append("  worker\n", MUTED)
    for region in [*job.regions, *(r for r in heard if r not in job.regions)]:
        r = heard.get(region)
        text.append(f"  {printable(region, 15):<16}")
        if r is None:
            text.append("… waiting", WARNING)
            text.append("\n")
            continue
        text.append(f"{printable(('✓ ' if r.ok else '✗ ') + r.outcome, 19):<20}", OK if r.ok else FAILED)
        text.append(f"{'' if r.status_code is None else r.status_code:>5}{human_ms(r.total_ms):>9}")
        detail = r.detail or {}
        hop = (detail.get("hops") or [detail])[-1] if detail else {}
        for key, _ in REGION_PHASES:
            value = hop.get(key) if isinstance(hop, dict) else None
            text.append(f"{human_ms(value) if isinstance(value, int | float) else '':>9}")
        text.append(f"  {printable(r.worker or '-', 40)}")
        if r.error and not r.ok:
            text.append("\n")
            text.append(f"  {'':<16}{printable(r.error, 200)}", FAILED)
        text.append("\n")
    return text.content


def summary_of(regions: tuple[str, ...], heard: dict[str, ResultRecord]) -> str:
    return region_summary(regions, {k: v.ok for k, v in heard.items()})


class DetailScreen(Screen[None]):
    """One job in full. ``escape`` goes back to the grid."""

    BINDINGS = [
        Binding("escape,q,backspace", "app.pop_screen", "Back", tooltip="back to the grid"),
        Binding("r", "app.retest", "Re-test", tooltip="re-test this job's URL"),
        Binding("c", "app.copy_url", "Copy URL", tooltip="copy the URL to the clipboard"),
        Binding("e", "app.export", "Export view", tooltip="export the grid's current view to CSV or JSON"),
        Binding("R", "app.retest_failed", "Re-test failing", show=False,
                tooltip="re-test every URL of the grid's view whose state is failing, each once"),
    ]

    def __init__(self, job: JobView, tz: tzinfo | None = None) -> None:
        super().__init__()
        self.job = job
        self.tz = tz
        self.results: list[ResultRecord] = []
        self.history: History | None = None
        self._shown = False  # the full result has been drawn once
        # Two reloads can finish close together: their redraws must not interleave (the
        # second removed the children before the first had mounted its own, and the
        # first's mount then met the second's widgets: DuplicateIds on detail-summary).
        self._drawing = asyncio.Lock()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-body"):
            yield Static(summary(self.job, self.tz), id="detail-summary")
            yield Static("loading the full result…", id="detail-loading", classes="dim")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()

    # Not exit_on_error: it runs on every change while the screen is open, and one that was
    # under way when the app quit must not fail the app (it has no app to report to).
    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def reload(self) -> None:
        store = self.app.runtime.store  # type: ignore[attr-defined]  # UrlTesterApp's (self.app is typed App)
        try:
            job = store.get_job(self.job.id, detail=True)
            results = region_results(store, [self.job.id], detail=True).get(self.job.id, [])
            history = None
            if job is not None:
                job.referrers = referrers_of(store, [job.id]).get(job.id) or None
                slow = (job.options or {}).get("slow_ms")
                history = load_history(store, job.url, now=self.app.clock(),  # type: ignore[attr-defined]  # UrlTesterApp's
                                       slow_ms=float(slow) if slow is not None else None)
        except StoreUnavailable as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        if job is not None and (job != self.job or results != self.results or history != self.history
                                or not self._shown):
            # Only what changed is drawn again: every commit anywhere asks a detail view that
            # is still waiting to look, and rebuilding every section each time kept the
            # screen busy (and lost its scroll position) under a stream of results.
            # show is async: textual awaits it
            self.app.call_from_thread(self.show, job, results, history)  # type: ignore[arg-type]

    def _failed(self, error: str) -> None:
        self.query_one("#detail-loading", Static).update(styled(f"database unreachable: {printable(error)}", FAILED))

    async def show(self, job: JobView, results: list[ResultRecord] | None = None,
                   history: History | None = None) -> None:
        """Draw (or redraw) every section for this job (``results``: its regions';
        ``history``: its URL's)."""
        async with self._drawing:
            await self._draw(job, results, history)

    async def _draw(self, job: JobView, results: list[ResultRecord] | None, history: History | None = None) -> None:
        self.job = job
        self.results = results or []
        self.history = history
        self._shown = True
        body = self.query_one("#detail-body", VerticalScroll)
        await body.remove_children()
        widgets: list[Static | Waterfall | Sparkline] = [Static(summary(job, self.tz), id="detail-summary")]
        if job.state == "cancelled":
            widgets.append(Static(styled("Cancelled before its check: it will not be checked (r re-tests it).", MUTED)))
        elif job.state != "done":
            widgets.append(Static(styled(f"Not checked yet ({job.state}); this view updates when it is.", MUTED)))
        sections: list[tuple[str, Any]] = []
        regions = regions_text(job, self.results)
        if regions is not None:
            sections.append(("Regions", Static(regions)))
        if job.detail is not None and job.state == "done":
            sections.append(("Timing", Waterfall(job.detail)))
        error = error_text(job)
        if error is not None:
            sections.append(("Error", Static(error)))
        if history is not None:  # the URL over time, before this check's own particulars
            sections.append(("URL history (30 days)", Static(history_text(history, self.tz), id="detail-history")))
            if len(history.latency) > 1:
                sections.append(("Latency over 30 days (median per hour)",
                                 Sparkline(list(history.latency), id="detail-trend")))
        for title, section in (("Linked from", referrers_text(job)),
                               ("Redirects", redirects_text(job)),
                               ("TLS certificate", tls_text(job)), ("Response headers", headers_text(job))):
            if section is not None:
                sections.append((title, Static(section)))
        for title, widget in sections:
            widgets.append(Static(styled(title, "bold underline"), classes="section-title"))
            widgets.append(widget)
        await body.mount_all(widgets)

    def changed(self) -> None:
        """Data changed somewhere: re-read this job while it is not done yet (or while one
        of its regions has not reported), and while its URL has a check it has not shown
        (a re-test from here)."""
        waiting = len({r.region for r in self.results} & set(self.job.regions)) < len(self.job.regions)
        if self.job.state != "done" or waiting or self.history is not None:
            self.reload()


__all__ = ["DetailScreen"]
