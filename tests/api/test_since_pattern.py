"""The API's `since` is enforced by its documented pattern: whatever the pattern allows,
the server reads (Schemathesis' positive and negative data checks rely on it)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.api.routes import SINCE_PATTERN
from runner.jobs.when import parse_since


@settings(max_examples=500, deadline=None)
@given(st.from_regex(SINCE_PATTERN, fullmatch=True))
def test_every_since_the_document_allows_is_read(text: str) -> None:
    parse_since(text)


@settings(max_examples=500, deadline=None)
@given(st.from_regex(SINCE_PATTERN, fullmatch=True))
def test_every_since_is_read_in_utc_the_offset_postgresql_takes(text: str) -> None:
    # Python reads offsets to ±23:59, PostgreSQL only to ±15:59: a -23:11 answered 500.
    assert parse_since(text).utcoffset().total_seconds() == 0
