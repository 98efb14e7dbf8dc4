"""A crawl: a batch that grows as its pages are checked (``runner crawl``).

:func:`start_crawl` records the crawl (:mod:`db.crawls`) and enqueues its roots. Each job
of a crawl carries ``"crawl": [batch, depth, follow]`` in its options (ignored by the
check, like a sitemap's ``lastmod``); ``follow`` says the page is in scope and above the
depth limit. The check task asks :meth:`Crawler.sink` for a reader of such a page's body:
the checker hands it the final response's bytes as they stream past (up to
``--max-bytes``), and :class:`PageLinks` reads an HTML body's links with
:class:`runner.discover.html.HtmlLinks` as they go. Before the page's result is stored,
:meth:`Crawler.follow` claims the links that are new to the crawl and records their jobs in
one transaction (the database decides: :func:`db.crawls.claim_and_record`), then publishes
them (:meth:`~runner.jobs.intake.Intake.publish`): a worker killed at any point loses
nothing (claimed and recorded, or neither; a recorded job whose message never went is
queued, and `runner requeue --stale` sends it). Links out of scope are checked, never followed; pages in scope that
robots.txt disallows are neither fetched nor checked (counted as skipped).

Scope: ``host`` (the same host name and port as a root: normalised URLs name no default
port, so ``http`` and ``https`` of one site are one host), ``domain`` (a root's domain, ``www.``
dropped, and its subdomains), ``prefix`` (URLs under a root's directory).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.robotparser
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from db import NewJob, Store, StoreUnavailable
from db.crawls import Crawl, claim_and_record, create_crawl, get_crawl
from runner.check.options import CheckOptions
from runner.discover.html import HtmlLinks
from runner.discover.links import Link
from runner.errors import BrokerError, ConfigError, InvalidInput
from runner.jobs.urls import normalise
from runner.taskq.app import Raw
from runner.text import mask_url

log = logging.getLogger("urltester.crawl")

CRAWL_KEY = "crawl"
SCOPES = ("host", "domain", "prefix")
DEFAULT_DEPTH = 3
DEFAULT_MAX_URLS = 100_000
MAX_LINKS = 10_000          # links read from one page, at most
ROBOTS_BYTES = 512 * 1024   # robots.txt read, at most (Google reads 500 KiB)
ROBOTS_TTL = 3600.0         # seconds a robots.txt is kept by a worker
CRAWLS_KEPT = 256           # crawls' settings kept by a worker
_HTML_TYPES = ("text/html", "application/xhtml+xml")


def marker(options: dict[str, Any]) -> tuple[int, int, bool] | None:
    """A crawl job's (batch, depth, follow), or None for any other job (or a bad marker)."""
    value = options.get(CRAWL_KEY)
    if not isinstance(value, list) or len(value) != 3:
        return None
    batch, depth, follow = value
    if not (isinstance(batch, int) and isinstance(depth, int) and isinstance(follow, bool)):
        return None
    return batch, depth, follow


def job_options(options: dict[str, Any], batch_id: int, depth: int, follow: bool) -> str:
    """A crawl job's options JSON: the crawl's check options and its marker."""
    return json.dumps({**options, CRAWL_KEY: [batch_id, depth, follow]}, sort_keys=True, separators=(",", ":"))


def in_scope(url: str, crawl: Crawl) -> bool:
    """Whether the crawl follows ``url`` (checks it either way)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    for root in crawl.roots:
        rparts = urlsplit(root)
        rhost = (rparts.hostname or "").lower()
        if crawl.scope == "host" and host == rhost and parts.port == rparts.port:
            return True
        if crawl.scope == "domain":
            domain = rhost.removeprefix("www.")
            if host == domain or host.endswith("." + domain):
                return True
        if crawl.scope == "prefix":
            folder = rparts.path[: rparts.path.rfind("/") + 1] or "/"
            if url.startswith(urlunsplit((rparts.scheme, rparts.netloc, folder, "", ""))):
                return True
    return False


def start_crawl(store: Store, intake: Any, *, batch_id: int, roots: Sequence[str], options: CheckOptions,
                scope: str, depth: int, max_urls: int, robots: bool) -> list[str]:
    """Record a crawl of ``roots`` (already normalised) as batch ``batch_id`` and enqueue its
    roots (depth 0); returns the roots enqueued."""
    base = options.to_json()
    crawl = Crawl(batch_id=batch_id, roots=tuple(roots), scope=scope, depth=depth, max_urls=max_urls,
                  robots=robots, options=base)
    claimed = create_crawl(store, crawl)
    jobs = [NewJob(url, job_options(base, batch_id, 0, depth > 0 and in_scope(url, crawl))) for url in claimed]
    intake.enqueue(batch_id, jobs)
    return claimed


class PageLinks:
    """A crawl page's body reader (:class:`runner.check.checker.BodySink`): the links of an
    HTML response, read as its bytes pass, at most :data:`MAX_LINKS`."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._reader: HtmlLinks | None = None
        self.links: list[Link] = []

    def start(self, url: str, content_type: str | None) -> bool:
        media, _, params = (content_type or "").partition(";")
        self.url, self.links, self._reader = url, [], None
        if media.strip().lower() not in _HTML_TYPES:
            return False
        charset = None
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip("'\"")
        self._reader = HtmlLinks(url, encoding=charset)
        return True

    def feed(self, data: bytes) -> None:
        if self._reader is not None and len(self.links) < MAX_LINKS:
            self.links += self._reader.feed(data)

    def finish(self) -> list[Link]:
        if self._reader is not None:
            self.links += self._reader.close()
            self._reader = None
        return self.links[:MAX_LINKS]


class CrawlParts(Protocol):
    store: Store
    settings: Any

    @property
    def intake(self) -> Any: ...

    @property
    def pacer(self) -> Any: ...


class Crawler:
    """A worker's side of the crawls: which pages to read, what their links become."""

    def __init__(self, runtime: CrawlParts) -> None:
        self.runtime = runtime
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._crawls: dict[int, Crawl | None] = {}
        self._robots: dict[str, tuple[float, urllib.robotparser.RobotFileParser | None]] = {}
        self._remote: Any = None

    def sink(self, options: dict[str, Any]) -> PageLinks | None:
        """A body reader for a page this crawl follows, else None (no cost to other jobs)."""
        found = marker(options)
        return PageLinks() if found is not None and found[2] else None

    def follow(self, options: dict[str, Any], page: str, ok: bool, sink: PageLinks | None) -> int:
        """After a crawl page's check: claim and enqueue its new links; returns how many.

        The database being away is raised (the page's message is given back and checked
        again later); anything else is logged: the page's own result is stored anyway."""
        try:
            return self._follow(options, page, ok, sink)
        except StoreUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - a page's links must not cost its result
            log.warning("links of %s not followed: %s: %s", mask_url(page), type(exc).__name__, exc)
            return 0

    def _follow(self, options: dict[str, Any], page: str, ok: bool, sink: PageLinks | None) -> int:
        found = marker(options)
        if found is None or sink is None or not ok or sink.url is None:
            return 0
        batch_id, depth, _ = found
        links = sink.finish()
        crawl = self._crawl(batch_id)
        if crawl is None or not links:
            return 0
        wanted: list[tuple[str, int]] = []
        follow: dict[str, bool] = {}
        referrers: list[tuple[str, str, str]] = []
        skipped = 0
        for link in links:
            if link.url is None:
                continue  # mailto:, javascript:, a bare #fragment ... or a link that cannot be resolved
            try:
                url = normalise(link.url)
            except InvalidInput:
                continue
            if url not in follow:
                scoped = in_scope(url, crawl)
                if scoped and crawl.robots and not self._allowed(url, crawl):
                    skipped += 1
                    follow[url] = False
                    continue
                follow[url] = scoped and depth + 1 < crawl.depth
                wanted.append((url, depth + 1))
            referrers.append((url, page, link.text))
        recorded = claim_and_record(self.runtime.store, batch_id, wanted, referrers,
                                    lambda url, d: job_options(crawl.options, batch_id, d, follow[url]),
                                    robots_skipped=skipped)
        if not recorded:
            return 0
        try:
            self.runtime.intake.publish([(job_id, url, Raw(options)) for job_id, url, options in recorded])
        except (BrokerError, ConfigError):
            pass  # recorded, marked unsent: `runner requeue --stale` sends them
        return len(recorded)

    # -- the crawl's settings and robots.txt, kept by this worker

    def _crawl(self, batch_id: int) -> Crawl | None:
        with self._lock:
            if batch_id in self._crawls:
                return self._crawls[batch_id]
        crawl = get_crawl(self.runtime.store, batch_id)
        with self._lock:
            if len(self._crawls) >= CRAWLS_KEPT:
                self._crawls.clear()
            self._crawls[batch_id] = crawl
        return crawl

    def _allowed(self, url: str, crawl: Crawl) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        now = time.monotonic()
        with self._lock:
            kept = self._robots.get(origin)
        if kept is None or kept[0] < now:
            with self._fetching:  # one fetch of a robots.txt per worker, however many threads ask
                with self._lock:
                    kept = self._robots.get(origin)
                if kept is None or kept[0] < now:
                    kept = (now + ROBOTS_TTL, self._read_robots(origin, crawl))
                    with self._lock:
                        if len(self._robots) >= CRAWLS_KEPT:
                            self._robots.clear()
                        self._robots[origin] = kept
        parser = kept[1]
        return True if parser is None else parser.can_fetch(self._agent(), url)

    @staticmethod
    def _agent() -> str:
        from runner.version import USER_AGENT

        return USER_AGENT

    def _read_robots(self, origin: str, crawl: Crawl) -> urllib.robotparser.RobotFileParser | None:
        """The origin's robots.txt, fetched as a check would be (address policy, host limits);
        None (everything allowed) when there is none. 401 and 403 disallow everything, as
        the standard library's parser has it."""
        from runner.check.fetch import FetchFailed
        from runner.jobs.documents import Remote

        with self._lock:
            if self._remote is None:
                self._remote = Remote(self.runtime, CheckOptions.from_json(crawl.options))
            remote = self._remote
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        try:
            fetched = remote.open(origin + "/robots.txt")
        except FetchFailed as exc:
            if exc.status in (401, 403):
                parser.disallow_all = True  # type: ignore[attr-defined]  # what read() sets on a 401/403
                return parser
            return None
        pieces: list[bytes] = []
        size = 0
        try:
            while size < ROBOTS_BYTES:
                piece = fetched.read(min(64 * 1024, ROBOTS_BYTES - size))
                if not piece:
                    break
                pieces.append(piece)
                size += len(piece)
        except Exception as exc:  # noqa: BLE001 - a broken robots.txt allows, as a missing one does
            log.warning("robots.txt of %s not read: %s", origin, exc)
            return None
        finally:
            fetched.close()
        parser.parse(b"".join(pieces).decode("utf-8", "replace").splitlines())
        return parser
