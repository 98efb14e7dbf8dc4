"""What `runner changes` calls each pair of checks (the comparison's rule, alone)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from db.urls import Check, Diff
from runner.jobs.history import classify, sparkline, write_changes_junit

AT = datetime(2026, 12, 1, tzinfo=UTC)


def check(ok: bool = True, ms: float = 100.0, code: int = 200, final: str = "https://x.test/", cert: str | None = None) -> Check:
    return Check(job_id=1, outcome="ok" if ok else "http_error", ok=ok, status_code=code, total_ms=ms,
                 final_url=final, checked_at=AT, cert=cert)


@pytest.mark.parametrize(("before", "after", "expected"), [
    (None, check(), "new"),
    (check(), None, "gone"),
    (check(), check(ok=False, code=500), "new_failure"),
    (check(ok=False, code=500), check(), "recovered"),
    (check(ok=False, code=500), check(ok=False, code=503), "still_failing"),
    (check(ms=100), check(ms=250), "slower"),         # 2.5x and 150 ms more
    (check(ms=10), check(ms=90), None),               # 9x, but only 80 ms more: not slower
    (check(ms=300), check(ms=500), None),             # 200 ms more, but under 2x
    (check(), check(code=203), "changed"),
    (check(), check(final="https://x.test/moved"), "changed"),
    (check(cert="2027-01-01"), check(cert="2027-06-01"), "changed"),  # a new certificate
    (check(), check(), None),
])
def test_classify(before, after, expected) -> None:
    assert classify(before, after) == expected


def test_slower_takes_its_factor() -> None:
    assert classify(check(ms=200), check(ms=350), slower=1.5) == "slower"
    assert classify(check(ms=200), check(ms=350)) is None


def test_junit_fails_new_and_continued_failures_only() -> None:
    out = io.StringIO()
    write_changes_junit([Diff("https://a.test/", "new_failure", check(), check(ok=False, code=500)),
                         Diff("https://b.test/", "recovered", check(ok=False), check()),
                         Diff("https://u:secret@c.test/", "still_failing", check(ok=False), check(ok=False))],
                        out, name="nightly")
    suite = ET.fromstring(out.getvalue())
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    assert [c.get("name") for c in suite if c.find("failure") is not None] == ["https://a.test/", "https://u:***@c.test/"]


def test_sparkline_scales_between_the_fastest_and_the_slowest() -> None:
    assert sparkline([10, None, 20]) == "▁ █"
    assert sparkline([]) == ""
