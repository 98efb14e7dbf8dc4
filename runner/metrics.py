"""Prometheus metrics: every urltester metric is defined here, and only here.

A leaf (imports nothing of ours), so each layer counts what it sees without importing
another: the task runner counts messages and publish confirms, the check task counts
checks by outcome and their phases, the writer times its commits. ``runner start
--metrics-port`` serves them (:func:`serve`); any other composition root (an HTTP API
server) renders the same registry with :func:`render`, so names and conventions are one.

Conventions (as blackbox_exporter's): ``urltester_`` prefix, ``_total`` counters,
``_seconds`` durations, and no label whose values are unbounded (no URL, host or reason).

Many processes. ``runner start --processes N`` runs N worker processes under a
supervisor; one scrape must see them all. Before it starts them the supervisor points
``PROMETHEUS_MULTIPROC_DIR`` at a private temporary directory (:func:`multiprocess_dir`),
each child (spawned, so it imports prometheus_client afresh) then keeps its values in
memory-mapped files there, and the supervisor serves their sum
(:class:`prometheus_client.multiprocess.MultiProcessCollector`). Gauges say how they add up
(``multiprocess_mode``): in-flight checks are summed over live processes, queue depth (the
same figure read by every process) is the most recent reading. With one process the
values live in the process and are served from its own registry.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

PHASES = ("dns", "connect", "tls", "ttfb", "transfer", "total")
# Seconds: a fast local target (1 ms) up to the largest deadline (300 s).
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0, 300.0)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)

# ---------------------------------------------------------------- checks (runner.jobs.tasks)

CHECKS = Counter("urltester_checks", "Checks finished, by outcome.", ["outcome"])
CHECK_SECONDS = Histogram("urltester_check_duration_seconds",
                          "Time of a check's final attempt, by phase (total: DNS to last body byte).",
                          ["phase"], buckets=DURATION_BUCKETS)
ATTEMPTS = Counter("urltester_check_attempts", "HTTP attempts made by checks (retries included).")
CERT_DAYS = Histogram("urltester_check_cert_days",
                      "Days left on the earliest-expiring certificate of a check over https "
                      "(negative: expired), one observation a check.",
                      buckets=(0, 7, 14, 30, 60, 90, 180, 365))
IN_FLIGHT = Gauge("urltester_checks_in_flight", "Checks running now.", multiprocess_mode="livesum")

# ---------------------------------------------------------------- results (runner.jobs.writer)

COMMIT_SECONDS = Histogram("urltester_writer_commit_seconds",
                           "Time of one committed transaction of results.", buckets=COMMIT_BUCKETS)
STORED = Counter("urltester_results_stored", "Results committed to the database.")

# ---------------------------------------------------------------- messages (runner.taskq)

RECEIVED = Counter("urltester_messages_received", "Messages delivered to this worker.")
DEAD_LETTERED = Counter("urltester_messages_dead_lettered",
                        "Messages (or calls out of one) sent to the dead-letter queue.")
REQUEUED = Counter("urltester_messages_requeued", "Messages given back for redelivery.")
PUBLISH_CONFIRMS = Counter("urltester_publish_confirms",
                           "Publishes RabbitMQ answered: ack (stored) or nack (refused).", ["result"])
QUEUE_MESSAGES = Gauge("urltester_queue_messages",
                       "Messages ready in the work queue (work) and in its dead-letter queue (dead), "
                       "as last read by a worker.", ["queue"], multiprocess_mode="mostrecent")
QUEUE_CONSUMERS = Gauge("urltester_queue_consumers", "Consumers on the work queue, as last read.",
                        multiprocess_mode="mostrecent")

# ---------------------------------------------------------------- alerts (runner.jobs.alerts)

# ``alert`` is an alert's name: a label bounded by the alerts an operator configured.
ALERTS_SENT = Counter("urltester_alerts_sent", "Alert messages tried, by alert and result: sent, "
                      "retry (will be tried again) or failed (given up).", ["alert", "result"])
ALERT_OUTBOX = Gauge("urltester_alerts_outbox", "Alert outbox rows waiting to be delivered, fleet-wide, "
                     "as last read.", multiprocess_mode="mostrecent")

# Label values known in advance, so a scrape shows every series (at 0) from the start and
# a rate() over a new series has a starting point; and children are looked up once. The
# outcomes are the check's (runner.check.outcomes): a leaf imports nothing of ours, so the
# check task labels them (:func:`label_outcomes`).
for _phase in PHASES:
    CHECK_SECONDS.labels(_phase)
for _result in ("ack", "nack"):
    PUBLISH_CONFIRMS.labels(_result)
CONFIRMED = PUBLISH_CONFIRMS.labels("ack")
REFUSED = PUBLISH_CONFIRMS.labels("nack")


def label_outcomes(outcomes: tuple[str, ...]) -> None:
    """Every outcome's series of ``urltester_checks_total``, at 0 until counted."""
    for outcome in outcomes:
        CHECKS.labels(outcome)


class MetricsError(Exception):
    """The metrics endpoint cannot be served (a port in use, an address not ours)."""


ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_dir() -> Iterator[str]:
    """A private directory for the children's metric files, removed afterwards.

    Set in the environment, so processes started inside inherit it; they must import
    prometheus_client after that (spawned processes do).
    """
    path = tempfile.mkdtemp(prefix="urltester-metrics-")
    before = os.environ.get(ENV)
    os.environ[ENV] = path
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        shutil.rmtree(path, ignore_errors=True)


def registry_for(path: str | None) -> CollectorRegistry:
    """What a scrape reads: the sum of the files in ``path``, or this process's metrics."""
    if path is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def process_gone(path: str, pid: int) -> None:
    """A child exited: its live gauges (in-flight) no longer count; its counters still do."""
    multiprocess.mark_process_dead(pid, path)


def serve(port: int, address: str = "0.0.0.0", *, path: str | None = None) -> None:  # noqa: S104 - scraped from outside
    """Serve ``/metrics`` on ``address:port`` from a daemon thread."""
    try:
        start_http_server(port, addr=address, registry=registry_for(path))
    except OSError as exc:
        where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        raise MetricsError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from exc


def render(path: str | None = None) -> tuple[bytes, str]:
    """The text exposition and its content type, for a server that has its own HTTP stack."""
    return generate_latest(registry_for(path)), CONTENT_TYPE_LATEST


# ---------------------------------------------------------------------------- runner serve

class ApiMetrics:
    """``runner serve``'s metrics, by the same conventions, with labels from a bounded set
    (the route template, never the raw path). One registry per app, so two apps in one test
    process never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("urltester_http_requests_total", "HTTP requests answered, by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.duration = Histogram("urltester_http_request_duration_seconds",
                                  "Time to answer (to the first byte of a stream).",
                                  ["method", "route"], registry=self.registry,
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.submitted = Counter("urltester_api_jobs_submitted_total", "Jobs recorded through the API.",
                                 registry=self.registry)
        self.rejected = Counter("urltester_api_urls_rejected_total", "URLs refused by validation through the API.",
                                registry=self.registry)
        self.event_streams = Gauge("urltester_api_event_streams", "Open /api/v1/events streams.",
                                   registry=self.registry)
        self.events = Counter("urltester_api_events_sent_total", "Result events sent to event streams.",
                              registry=self.registry)
        # runner serve's alert sender counts in this process's globals: shown here too (with
        # --workers N the sender is the supervisor's, whose figures the workers do not see).
        for collector in (ALERTS_SENT, ALERT_OUTBOX):
            self.registry.register(collector)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
