"""The rollups' latency histogram: merged in any split, p50/p95/p99 within 1% of the exact."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from db.rollups import Rollup, percentile

latencies = st.lists(st.floats(min_value=0.1, max_value=300_000, allow_nan=False), min_size=1, max_size=300)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@settings(max_examples=300, deadline=None)
@given(values=latencies, cuts=st.lists(st.integers(0, 300), max_size=5))
def test_percentiles_of_merged_rollups_are_within_one_percent(values: list[float], cuts: list[int]) -> None:
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    total = Rollup()
    for lo, hi in zip(bounds, bounds[1:], strict=False):  # hours merged into a day, days into a window
        part = Rollup()
        for v in values[lo:hi]:
            part.add(True, "ok", v)
        total.merge(part)
    assert total.checks == len(values)
    for q in (0.5, 0.95, 0.99):
        got = percentile(total.hist, q)
        assert abs(got - exact(values, q)) <= 0.01 * exact(values, q), (q, got, exact(values, q))


def test_an_empty_window_has_no_percentile() -> None:
    assert percentile({}, 0.5) is None
