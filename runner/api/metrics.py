"""The API process's Prometheus metrics, by the project's conventions (``urltester_`` prefix,
``_total`` counters, ``_seconds`` histograms, labels from a bounded set: the route template,
never the raw path)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class ApiMetrics:
    """One registry per app, so two apps in one test process never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("urltester_http_requests_total", "HTTP requests answered, by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.duration = Histogram("urltester_http_request_duration_seconds", "Time to answer (to the first byte of a stream).",
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

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
