"""The metric definitions and what one check adds to them (in this process's registry).

tests/test_operations.py scrapes a real worker; this pins down the conventions and the
fields of a result that a check over plain http (all a worker test has) cannot show.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from runner import metrics
from runner.check.checker import CheckResult
from runner.jobs.tasks import count

BOUNDED_LABELS = {"outcome", "phase", "result", "queue",  # each has a fixed, short list of values
                  "alert"}  # an alert's name: as many as an operator configured (issue 22 names it)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_names_follow_prometheus_conventions_and_no_label_is_unbounded() -> None:
    defined = [m for m in vars(metrics).values() if isinstance(m, Counter | Gauge | Histogram)]
    assert len(defined) >= 13
    for metric in defined:
        assert metric._name.startswith("urltester_"), metric._name
        assert set(metric._labelnames) <= BOUNDED_LABELS, f"{metric._name} has labels {metric._labelnames}"
        if isinstance(metric, Histogram) and metric is not metrics.CERT_DAYS:
            assert metric._name.endswith("_seconds"), f"{metric._name}: durations are in seconds"


def test_one_check_counts_its_outcome_attempts_phases_and_certificate() -> None:
    before = {
        "ok": value("urltester_checks_total", outcome="ok"),
        "attempts": value("urltester_check_attempts_total"),
        "tls": value("urltester_check_duration_seconds_count", phase="tls"),
        "tls_sum": value("urltester_check_duration_seconds_sum", phase="tls"),
        "soon": value("urltester_check_cert_days_bucket", le="14.0"),
        "expired": value("urltester_check_cert_days_bucket", le="0.0"),
    }
    count(CheckResult(outcome="ok", ok=True, total_ms=80.0, dns_ms=1.0, connect_ms=2.0, tls_ms=30.0,
                      ttfb_ms=40.0, transfer_ms=7.0, attempts=2, cert_days=10))
    assert value("urltester_checks_total", outcome="ok") == before["ok"] + 1
    assert value("urltester_check_attempts_total") == before["attempts"] + 2
    assert value("urltester_check_duration_seconds_count", phase="tls") == before["tls"] + 1
    assert abs(value("urltester_check_duration_seconds_sum", phase="tls") - before["tls_sum"] - 0.030) < 1e-9
    assert value("urltester_check_cert_days_bucket", le="14.0") == before["soon"] + 1
    assert value("urltester_check_cert_days_bucket", le="0.0") == before["expired"]


def test_render_is_the_text_format_a_second_server_can_serve() -> None:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    assert b"# TYPE urltester_checks_total counter" in body
