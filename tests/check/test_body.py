"""Body assertions stream: found across chunk edges, in memory the size of the texts."""

from __future__ import annotations

import tracemalloc

import pytest

from runner.check.body import BodyScan, body_texts
from runner.check.checker import Checker
from runner.check.options import parse_options

from .conftest import Server


def _scan(chunks: list[bytes], search: set[str], equal: set[str] = frozenset(),  # type: ignore[assignment]
          charset: str = "utf-8") -> BodyScan:
    scan = BodyScan(charset, search, set(equal))
    for chunk in chunks:
        scan.feed(chunk)
    scan.finish()
    return scan


def test_a_text_across_a_chunk_edge_is_found() -> None:
    scan = _scan([b"xxxNEE", b"D", b"LEyyy"], {"NEEDLE", "absent", "x"})
    assert scan.contains("NEEDLE") and scan.contains("x") and not scan.contains("absent")
    assert scan.contains("")


def test_a_character_split_across_chunks_is_decoded_once() -> None:
    data = "größe: 10 €".encode()
    cut = data.index("€".encode()) + 1          # inside the three bytes of €
    scan = _scan([data[:cut], data[cut:]], {"10 €"}, {"größe: 10 €"})
    assert scan.contains("10 €") and scan.equals("größe: 10 €")


def test_the_declared_charset_is_used() -> None:
    scan = _scan(["Ærø".encode("latin-1")], {"Ærø"}, charset="latin-1")
    assert scan.contains("Ærø")


def test_equality_needs_the_whole_body() -> None:
    scan = _scan([b"ok", b"!"], set(), {"ok"})
    assert not scan.equals("ok") and scan.holds("!=", "ok")
    assert _scan([b"o", b"k"], set(), {"ok"}).holds("==", "ok")


def test_texts_come_from_options_and_conditions() -> None:
    options = parse_options({"body_contains": "a", "body_excludes": "b",
                             "condition": ['body contains "c"', 'body == "d"', "status == 200"]})
    assert body_texts(options) == ({"a", "b", "c"}, {"d"})


@pytest.mark.parametrize("option", [{"body_contains": "zzz"}, {"condition": 'body contains "zzz"'},
                                    {"body_excludes": "zzz"}])
def test_search_of_a_large_body_holds_no_copy_of_it(checker: Checker, hostile: Server, option) -> None:
    # 32 MiB with the text at its very end. Holding the body, joining and decoding it took
    # about 2.4 times its size; streaming holds the title prefix and one chunk.
    options = parse_options({"max_bytes": str(100 * 1024 * 1024), "deadline": "20", **option})
    tracemalloc.start()
    try:
        result = checker.check(hostile.url("/big-needle"), options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.bytes == 32 * 1024 * 1024
    assert result.outcome == ("assertion_failed" if "body_excludes" in option else "ok"), result.error
    assert peak < 4 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
