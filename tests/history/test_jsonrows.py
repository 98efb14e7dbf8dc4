"""Rows sent as one JSON parameter (db/jsonrows.py, the write path's statements on
PostgreSQL) come back exactly as a multi-row VALUES sends them, and rollups merged in the
database add up, key by key."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from db import open_store

TYPES = ("bigint", "double precision", "text", "boolean", "timestamptz", "jsonb", "integer")
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
rows = st.lists(st.tuples(
    st.integers(-(2 ** 63) + 1, 2 ** 63 - 1),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    st.one_of(st.none(), texts),
    st.booleans(),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                            timezone(-timedelta(hours=8))])),
    st.dictionaries(texts, st.one_of(st.integers(-1000, 1000), texts, st.booleans()), max_size=3),
    st.one_of(st.none(), st.integers(-(2 ** 31) + 1, 2 ** 31 - 1)),
), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=rows)
def test_json_rows_read_back_as_values_rows(pg_url: str, values: list[tuple]) -> None:
    from db import jsonrows

    store = open_store(pg_url, max_connections=1)
    try:
        d = store.dialect
        with d.transaction() as cur:
            sent = [(*row[:5], d.json(row[5]), row[6]) for row in values]
            assert jsonrows.execute(cur, "SELECT * FROM (", TYPES, sent, ") v")
            by_json = cur.fetchall()
            template = "(" + ", ".join(f"%s::{t}" for t in TYPES) + ")"
            by_values = d.execute_values(cur, "SELECT * FROM (VALUES %s) v", sent, template=template, fetch=True)
        assert by_json == by_values
        assert [row[4] for row in by_json] == [row[4] for row in values]  # the same instants
    finally:
        store.close()


def test_a_value_json_cannot_carry_falls_back() -> None:
    from db import jsonrows

    assert jsonrows.encode([(1, float("nan"))]) is None
    assert jsonrows.encode([(1, float("inf"))]) is None
    assert jsonrows.encode([(1, 2.5, None, "é")]) == '[[1,2.5,null,"é"]]'


def test_counts_merge_in_the_database(store) -> None:
    d = store.dialect
    with d.transaction() as cur:
        merge = (f"SELECT {d.counts_add('a.old', 'a.new')} "
                 "FROM (SELECT CAST(%s AS text) AS old, CAST(%s AS text) AS new) a")
        cur.execute(merge, ('{"ok":3,"150":2}', '{"150":1,"7":2}'))
        merged = cur.fetchone()[0]
        cur.execute(merge, ('{"ok":3}', "{}"))
        unchanged = cur.fetchone()[0]
    assert json.loads(merged) == {"ok": 3, "150": 3, "7": 2}
    assert json.loads(unchanged) == {"ok": 3}
