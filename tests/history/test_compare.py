"""What `runner changes` calls each pair of checks (the comparison's rule, alone)."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from db.urls import Check, Diff
from runner.jobs.history import classify, sparkline, write_changes_junit

AT = datetime(2026, 12, 1, tzinfo=UTC)


def check(ok: bool = True, ms: float = 100.0, code: int = 200, final: str = "https://x.test/",
          cert: str | None = None) -> Check:
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
    assert [c.get("name") for c in suite if c.find("failure") is not None] == ["https://a.test/",
                                                                               "https://u:***@c.test/"]


def test_sparkline_scales_between_the_fastest_and_the_slowest() -> None:
    assert sparkline([10, None, 20]) == "▁ █"
    assert sparkline([]) == ""


# ---------------------------------------------------------------------------- against the store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_batch_is_compared_with_each_urls_check_just_before_it(store) -> None:
    """The previous batch stands for the check before, except where a re-test (with a
    result) came between; a cancelled re-test never counts; URLs missing from either side
    are gone or new."""
    from datetime import timedelta

    from db import NewJob, ResultRecord
    from db.urls import checks_before, first_job
    from runner.jobs.history import compare_batch

    k = iter(range(1000))

    def check_all(ids: list[int], oks: list[bool]) -> None:
        store.store_results([ResultRecord(job_id=j, outcome="ok" if ok else "http_error", ok=ok, attempts=1,
                                          status_code=200 if ok else 500, total_ms=10.0, error=None,
                                          checked_at=T0 + timedelta(minutes=next(k)))
                             for j, ok in zip(ids, oks, strict=True)])

    def night(urls: str) -> tuple[int, list[int]]:
        batch = store.create_batch("nightly")
        return batch.id, store.insert_jobs(batch.id, [NewJob(f"http://{u}.test/") for u in urls])

    _, one = night("abcde")
    check_all(one, [True, True, False, True, True])
    [retest_b, retest_c] = store.insert_jobs(None, [NewJob("http://b.test/"), NewJob("http://c.test/")])
    check_all([retest_b], [False])  # b failed in between: the check before night two
    store.cancel_jobs(ids=[retest_c])  # c's re-test never ran: night one's check stands
    two_id, two = night("abcdf")
    check_all(two, [True, True, False, False, True])
    diffs = {d.url[7]: (d.change, d.before and d.before.job_id) for d in compare_batch(store, two_id).diffs}
    assert diffs == {"b": ("recovered", retest_b), "c": ("still_failing", one[2]), "d": ("new_failure", one[3]),
                     "e": ("gone", one[4]), "f": ("new", None)}
    # The same as each URL's own walk back through its jobs.
    first = first_job(store, two_id)
    assert first is not None
    walked = checks_before(store, [store_url_id(store, j) for j in two], below_job=first)
    assert {c.job_id for c in walked.values()} == {one[0], retest_b, one[2], one[3]}


def store_url_id(store, job_id: int) -> int:
    with store.dialect.transaction(write=False) as cur:
        cur.execute("SELECT url_id FROM jobs WHERE id = %s", (job_id,))
        return int(cur.fetchone()[0])
