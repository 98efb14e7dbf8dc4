"""Options and conditions: every mistake is caught at submit time, with a clear message."""

from __future__ import annotations

import pytest

from runner.check.options import (
    DEFAULT_OPTIONS,
    OPTION_NAMES,
    CheckOptions,
    parse_condition,
    parse_options,
    parse_status_set,
)
from runner.errors import InvalidInput, OptionError


def test_defaults_store_as_empty_json() -> None:
    assert DEFAULT_OPTIONS.to_json() == {}
    assert CheckOptions.from_json({}) == DEFAULT_OPTIONS
    assert parse_options({}) == DEFAULT_OPTIONS


def test_csv_empty_cells_are_unset() -> None:
    row = {name: "" for name in OPTION_NAMES}
    row["url"] = "http://example.com/"
    assert parse_options(row) == DEFAULT_OPTIONS


def test_round_trip_of_every_option() -> None:
    opts = parse_options({
        "method": "head", "expect_status": "2xx, 304", "body_contains": "OK",
        "body_excludes": "error", "max_ms": "500", "deadline": "2.5", "max_redirects": "0",
        "insecure": "yes", "max_bytes": "64k", "header": "X-A: 1\nAuthorization: Bearer t",
        "condition": ["total_ms<500", "status in 200-299", 'body contains "a b"'],
        "retries": "1",
    })
    assert opts.method == "HEAD"
    assert opts.expect_status == "200-299,304"
    assert opts.max_bytes == 65536
    assert opts.max_redirects == 0
    assert opts.insecure is True
    assert opts.headers == (("X-A", "1"), ("Authorization", "Bearer t"))
    assert opts.conditions == ("total_ms < 500", "status in 200-299", 'body contains "a b"')
    data = opts.to_json()
    assert data["header"] == ["X-A: 1", "Authorization: Bearer t"]
    assert CheckOptions.from_json(data) == opts
    assert "deadline" in data and "url" not in data


def test_json_values_typed() -> None:
    opts = parse_options({"max_ms": 250, "deadline": 5, "insecure": True, "max_redirects": 3,
                          "expect_status": 204, "headers": [["X-B", "2"]]})
    assert opts.max_ms == 250.0 and opts.deadline == 5.0 and opts.expect_status == "204"
    assert opts.headers == (("X-B", "2"),)


@pytest.mark.parametrize(("raw", "name", "words"), [
    ({"method": "POST"}, "method", "not one of GET, HEAD"),
    ({"expect_status": "2000"}, "expect_status", "not a status code"),
    ({"expect_status": "299-200"}, "expect_status", "backwards"),
    ({"deadline": "0"}, "deadline", "more than 0"),
    ({"deadline": "1000"}, "deadline", "at most 300"),
    ({"deadline": "soon"}, "deadline", "not a number"),
    ({"max_ms": "-1"}, "max_ms", "more than 0"),
    ({"max_redirects": "1.5"}, "max_redirects", "whole number"),
    ({"insecure": "maybe"}, "insecure", "true or false"),
    ({"max_bytes": "2 GiB"}, "max_bytes", "not a size"),
    ({"header": "NoColon"}, "header", "not 'Name: value'"),
    ({"header": "Bad Name: x"}, "header", "not a valid header name"),
    ({"header": "Host: evil"}, "header", "set by the check"),
    ({"condition": "latency < 5"}, "condition", "unknown field"),
    ({"condition": "total_ms < fast"}, "condition", "is a number"),
    ({"condition": "title < 5"}, "condition", "is text"),
    ({"condition": "body contains two words"}, "condition", "double quotes"),
    ({"condition": "bytes in 1-2"}, "condition", "status only"),
    ({"condition": "nonsense"}, "condition", "FIELD OP VALUE"),
    ({"max-ms": "5"}, "max-ms", "unknown option"),
    ({"retries": "0"}, "retries", "between 1 and"),
])
def test_bad_values_name_option_and_value(raw: dict, name: str, words: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_options(raw, where="jobs.csv:7")
    err = info.value
    assert isinstance(err, InvalidInput)
    assert err.where == f"jobs.csv:7: {name}"
    assert words in err.message
    assert str(err).startswith(f"jobs.csv:7: {name}: ")


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(OptionError):
        CheckOptions.from_json(["method"])  # type: ignore[arg-type]


def test_conditions_parse_to_canonical_text() -> None:
    assert parse_condition("  cert_days>=14 ").text == "cert_days >= 14"
    assert parse_condition("header.Content-Type contains json").text == 'header.content-type contains "json"'
    assert parse_condition('title == "A \\"quoted\\" title"').value == 'A "quoted" title'
    assert parse_condition("body !contains error").op == "not contains"
    assert parse_condition("body not  contains 'x y'").value == "x y"
    assert 304 in parse_condition("status in 2xx,304").value


def test_status_set() -> None:
    s = parse_status_set("200-299, 304")
    assert 200 in s and 299 in s and 304 in s and 300 not in s and "200" not in s
    assert str(s) == "200-299,304"
