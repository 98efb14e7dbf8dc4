"""Reading import files: formats, line numbers, hostile lines, the URL fast path (no services)."""

from __future__ import annotations

import io
import json
import random

import pytest

from runner.check.options import CheckOptions, parse_options
from runner.errors import InvalidInput
from runner.jobs.intake import Validator
from runner.jobs.readers import MAX_LINE_BYTES, ImportUsageError, Source, detect_format, records
from runner.jobs.urls import _parse, normalise


def parse(data: bytes, name: str = "in.txt", fmt: str | None = None) -> tuple[str, list[tuple]]:
    source = Source(name, io.BytesIO(data))
    found, items = records(source, fmt)
    return found, list(items)


@pytest.mark.parametrize(("name", "first", "expected"), [
    ("a.csv", None, "csv"), ("a.JSONL", None, "jsonl"), ("a.ndjson", None, "jsonl"), ("a.txt", "{", "text"),
    ("-", '{"url": "x"}', "jsonl"), ("-", "url,method", "csv"), ("-", '"URL" , expect_status', "csv"),
    ("-", "https://a.test/x,y", "text"), ("-", "https://a.test/", "text"), ("-", None, "text"),
])
def test_format_from_extension_then_content(name, first, expected) -> None:
    assert detect_format(name, first) == expected


def test_text_skips_comments_and_blanks_and_keeps_line_numbers() -> None:
    fmt, items = parse(b"# header\n\nhttps://a.test/\r\n  b.test/x  \n\n#x\nc.test\n")
    assert fmt == "text"
    assert items == [(3, "https://a.test/", None), (4, "b.test/x", None), (7, "c.test", None)]


def test_content_sniffing_reads_stdin_only_once() -> None:
    fmt, items = parse(b"\n# c\nurl,method\nhttps://a.test/,HEAD\n", name="<stdin>")
    assert fmt == "csv"
    assert items == [(4, "https://a.test/", {"method": "HEAD"})]


def test_a_huge_line_is_refused_without_reading_it_whole_and_the_next_line_counts() -> None:
    huge = b"https://a.test/" + b"x" * (MAX_LINE_BYTES * 4) + b"\n"
    source = Source("big.txt", io.BytesIO(b"https://ok.test/\n" + huge + b"https://after.test/\n"))
    seen = []
    for number, text, error in source.lines():
        seen.append((number, None if text is None else len(text), error))
    assert seen[0] == (1, len("https://ok.test/\n"), None)
    assert seen[1][0] == 2 and seen[1][1] is None and "longer than the limit of 256 KiB" in seen[1][2]
    assert str(len(huge)) in seen[1][2]
    assert seen[2] == (3, len("https://after.test/\n"), None)


def test_undecodable_bytes_spoil_one_line_only() -> None:
    _, items = parse(b"\xef\xbb\xbfhttps://a.test/\nhttps://b.test/\xff\xfe\nhttps://c.test/\n")
    assert items[0] == (1, "https://a.test/", None)  # a UTF-8 BOM is not part of the URL
    assert items[1][0] == 2 and items[1][1] == "undecodable bytes (not UTF-8) at byte 16"
    assert items[2] == (3, "https://c.test/", None)


def test_csv_quoted_cells_may_span_lines_and_records_keep_their_first_line() -> None:
    data = (b'url,header,expect_status\n'
            b'https://a.test/,"X-A: 1\nX-B: 2",200\n'
            b'https://b.test/,,\n'
            b'https://c.test/,too,many,fields\n'
            b'\n'
            b'https://d.test/,,2xx\n')
    fmt, items = parse(data, name="jobs.csv")
    assert fmt == "csv"
    assert items[0] == (2, "https://a.test/", {"header": "X-A: 1\nX-B: 2\n"[:-1], "expect_status": "200"})
    assert items[1] == (4, "https://b.test/", None)
    assert items[2][0] == 5 and items[2][1] == "4 fields, but the header has 3"
    assert items[3] == (7, "https://d.test/", {"expect_status": "2xx"})


def test_csv_header_problems_refuse_the_whole_file() -> None:
    with pytest.raises(ImportUsageError, match=r"jobs.csv:1: the CSV header has no 'url' column"):
        parse(b"link,method\nhttps://a.test/,GET\n", name="jobs.csv")
    with pytest.raises(ImportUsageError, match=r"jobs.csv:2: unknown column 'colour'"):
        parse(b"\nurl,colour\nhttps://a.test/,red\n", name="jobs.csv")


def test_csv_bad_line_inside_the_file_is_reported_with_its_number() -> None:
    _, items = parse(b"url,method\nhttps://a.test/,GET\nhttps://b.test/\xff,GET\nhttps://c.test/,HEAD\n", name="x.csv")
    assert items[0] == (2, "https://a.test/", {"method": "GET"})
    assert items[1][0] == 3 and items[1][1].startswith("undecodable bytes")
    assert items[2] == (4, "https://c.test/", {"method": "HEAD"})


def test_jsonl_records_and_refusals() -> None:
    data = (b'{"url": "https://a.test/", "method": "HEAD", "header": ["X-A: 1"]}\n'
            b'\n'
            b'{"url": "https://b.test/"\n'
            b'["https://c.test/"]\n'
            b'{"href": "https://d.test/"}\n'
            b'{"url": "https://e.test/"}\n')
    fmt, items = parse(data, name="in.jsonl")
    assert fmt == "jsonl"
    assert items[0] == (1, "https://a.test/", {"method": "HEAD", "header": ["X-A: 1"]})
    assert items[1][0] == 3 and items[1][1].startswith("not valid JSON")
    assert items[2][:2] == (4, 'expected a JSON object with a "url" key')
    assert items[3][:2] == (5, 'no "url" key with a text value')
    assert items[4] == (6, "https://e.test/", None)


def test_validator_merges_line_options_over_file_defaults() -> None:
    defaults = parse_options({"method": "HEAD", "deadline": 5})
    v = Validator(defaults)
    assert v.job("a.test", None) == ("https://a.test/", '{"deadline":5.0,"method":"HEAD"}')
    assert v.job("b.test", {"method": "GET", "expect_status": ""}) == ("https://b.test/", '{"deadline":5.0}')
    assert v.job("d.test", {"method": None, "header": []}) == ("https://d.test/", v.default_json)
    with pytest.raises(InvalidInput, match=r"^expect_status: '999'"):
        v.job("c.test", {"expect_status": "999"})
    with pytest.raises(InvalidInput, match="unknown option"):
        v.job("c.test", {"colour": "red"})


def test_validator_drops_duplicates_by_url_and_options_unless_kept() -> None:
    v = Validator(CheckOptions())
    assert v.job("https://a.test/", None) is not None
    assert v.job("HTTPS://A.TEST", None) is None  # the same URL once normalised
    assert v.job("https://a.test/", {"method": "HEAD"}) is not None  # other options: another check
    keep = Validator(CheckOptions(), keep_duplicates=True)
    assert keep.job("a.test", None) == keep.job("a.test", None)


SAMPLES = [
    "https://a.test/", "http://a.test:80/", "https://a.test:443/x", "https://a.test:8443/x?y=1", "http://a.test:080/",
    "https://a.test:65536/", "https://A.test/", "https://a.test", "https://a.test/?", "https://a.test/#frag",
    "https://a.test/x?q#f", "https://user:pw@a.test/", "https://a.test./", "https://xn--bcher-kva.test/",
    "https://bücher.test/", "https://a..test/", "https://-a.test/", "https://a_b.test/", "https://1.2.3.4:0/",
    "https://[::1]:8080/", "https://a.test/%zz/[x]", "https://a.test//double", "https://a.test/é",
    "ftp://a.test/", "https://" + "a" * 64 + ".test/", "https://" + ".".join(["a" * 60] * 5) + "/",
    "https://a.test/" + "x" * 5000, "https://a.test/\x85", "https://a.test/\\x", "http://a.test:99999/",
]


def _outcome(fn, text):
    try:
        return fn(text)
    except InvalidInput as exc:
        return ("invalid", exc.message)


@pytest.mark.parametrize("text", SAMPLES)
def test_fast_path_agrees_with_normalise(text) -> None:
    assert _outcome(normalise, text) == _outcome(_parse, text)


def test_fast_path_agrees_with_normalise_on_random_urls() -> None:
    rng = random.Random(7)
    alphabet = "aZ09-_.:/?#@%[]!~é\\ "
    for _ in range(3000):
        host = "".join(rng.choice("abz09-_.") for _ in range(rng.randint(1, 12)))
        port = rng.choice(["", ":80", ":443", ":8080", ":0", ":65535", ":070"])
        path = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        text = f"{rng.choice(['http', 'https', 'HTTP'])}://{host}{port}/{path}"
        assert _outcome(normalise, text) == _outcome(_parse, text), text



def test_options_kept_as_json_text_reach_the_task_as_the_same_dict() -> None:
    """The intake passes each job's options as the JSON text it validated (Raw): the
    message must carry exactly what a dict would have, and every call its own id."""
    from runner.taskq.app import Call, Raw, decode, encode

    v = Validator(parse_options({"body_contains": 'café "quoted" \\ back', "header": ["X-A: 1"]}))
    chunk = [v.job(u, None) for u in ('https://a.test/"q"', "https://b.test/a\\b", "https://c.test/é")]
    chunk += [v.job(f"https://d.test/{i}", {"method": "HEAD"}) for i in range(20)]
    raw = [Call("check", (100 + i, url, Raw(opts))) for i, (url, opts) in enumerate(chunk)]
    plain = [Call("check", (100 + i, url, json.loads(opts)), id=c.id)
             for i, ((url, opts), c) in enumerate(zip(chunk, raw, strict=True))]
    assert encode(raw) == encode(plain)
    calls = decode(encode(raw))
    assert [c.args for c in calls] == [c.args for c in plain]
    assert len({c.id for c in calls}) == len(calls)


def test_digest_set_is_a_set() -> None:
    """The flat dedup table answers exactly as a Python set would, across many growths."""
    import random

    from runner.jobs.intake import DigestSet

    rng = random.Random(7)
    table, reference = DigestSet(capacity=8), set()
    for _ in range(50_000):
        value = rng.getrandbits(18) or 1
        assert table.add(value) is (value not in reference)
        reference.add(value)
    assert len(table) == len(reference)
