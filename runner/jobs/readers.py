"""Reading import files: lines as bytes with a length cap, then text, CSV or JSON Lines records.

Lines are read as bytes with a length cap (:data:`MAX_LINE_BYTES`): a huge line is skipped
and reported without ever being held whole. Each line is decoded on its own, so an
undecodable byte spoils one line, never the file. Each parser yields records or refusals
(line number, reason, the text to show), in line order, so a caller reports every bad line
as ``FILE:LINE: reason`` and goes on.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from runner.check.options import OPTION_ALIASES, OPTION_NAMES
from runner.errors import InvalidInput
from runner.jobs.regions import PLACEMENT_KEYS
from runner.taskq.app import MAX_DEPTH, nesting_depth

FORMATS = ("text", "csv", "jsonl")  # read here, a line at a time
DOCUMENT_FORMATS = ("sitemap", "html", "markdown")  # read by runner.jobs.documents
IMPORT_FORMATS = (*FORMATS, *DOCUMENT_FORMATS)
MAX_LINE_BYTES = 256 * 1024  # a longer line is refused without being read whole
_EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
               ".txt": "text", ".list": "text", ".urls": "text"}
_COLUMNS = frozenset(OPTION_NAMES) | frozenset(OPTION_ALIASES) | frozenset(PLACEMENT_KEYS) | {"lastmod"}


class ImportUsageError(InvalidInput):
    """The file as a whole cannot be imported (unreadable, no url column ...): exit 2."""


@dataclass
class Source:
    """Where the lines come from: a file or stdin, read as bytes."""

    name: str
    stream: IO[bytes]
    size: int | None = None  # bytes, when known (for the progress bar)
    read: int = 0            # bytes read so far
    line_count: int = 0      # lines read so far

    @classmethod
    def open(cls, path: str, stdin: IO[bytes] | None = None) -> Source:
        if path == "-":
            return cls("<stdin>", stdin if stdin is not None else sys.stdin.buffer)
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed by Source.close
            size = os.fstat(stream.fileno()).st_size
        except OSError as exc:
            raise ImportUsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return cls(path, stream, size)

    def close(self) -> None:
        if self.name != "<stdin>":
            self.stream.close()

    def lines(self) -> Iterator[tuple[int, str | None, str | None]]:
        """``(line number, text with its line ending, None)`` or ``(number, None, reason)``."""
        readline = self.stream.readline
        number = 0
        while True:
            raw = readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            self.line_count = number
            self.read += len(raw)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                length = len(raw)
                while True:  # skip the rest of the line, a piece at a time
                    more = readline(1 << 16)
                    length += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                self.read += length - len(raw)
                yield number, None, f"line of {length} bytes is longer than the limit of {MAX_LINE_BYTES // 1024} KiB"
                continue
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield number, raw.decode("utf-8"), None
            except UnicodeDecodeError as exc:
                yield number, None, f"undecodable bytes (not UTF-8) at byte {exc.start + 1}"


def detect_format(name: str, first: str | None) -> str:
    """The format from the file name's extension, else from the first meaningful line."""
    ext = os.path.splitext(name)[1].lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if first is None:
        return "text"
    line = first.strip()
    if line.startswith("{"):
        return "jsonl"
    if "," in line or line.lower().strip('"') == "url":
        cells = [c.strip().strip('"').lower() for c in next(csv.reader([line]), [])]
        if "url" in cells:
            return "csv"
    return "text"


# ---------------------------------------------------------------------------- records

# One parsed record: (line number, URL text, the line's own options or None); a document's
# records name their place instead of a line number (``sitemap.xml:12``).
Record = tuple[int | str, str, dict[str, Any] | None]
# Parsers yield either a Record or a refusal: (line number or place, reason, the text to show).
Refusal = tuple[int | str, str, str]


def _text_records(lines: Iterable[tuple[int, str | None, str | None]]) -> Iterator[Record | Refusal]:
    for number, text, error in lines:
        if error is not None:
            yield number, error, ""
            continue
        assert text is not None
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped, None


def _jsonl_records(lines: Iterable[tuple[int, str | None, str | None]]) -> Iterator[Record | Refusal]:
    for number, text, error in lines:
        if error is not None:
            yield number, error, ""
            continue
        assert text is not None
        stripped = text.strip()
        if not stripped:
            continue
        try:
            obj = json.loads(stripped)
            too_deep = nesting_depth(obj) > MAX_DEPTH
        except RecursionError:  # 100,000 '[' on a line: Python's parser gives up
            too_deep = True
        except ValueError as exc:
            yield number, f"not valid JSON ({exc})", stripped
            continue
        if too_deep:
            yield number, f"JSON nested more than {MAX_DEPTH} levels deep", stripped[:200]
            continue
        if not isinstance(obj, dict):
            yield number, "expected a JSON object with a \"url\" key", stripped
            continue
        url = obj.pop("url", None)
        if not isinstance(url, str):
            yield number, "no \"url\" key with a text value", stripped
            continue
        yield number, url, obj or None


def _csv_records(lines: Iterable[tuple[int, str | None, str | None]], name: str) -> Iterator[Record | Refusal]:
    """CSV with a header naming a ``url`` column and option columns. A quoted cell may span
    lines (several headers or conditions); a record is reported by its first line."""
    current = [0]
    spoiled: list[tuple[int, str]] = []

    def feed() -> Iterator[str]:
        for number, text, error in lines:
            current[0] = number
            if error is not None:
                spoiled.append((number, error))
                yield "\n"
                continue
            assert text is not None
            yield text if text.endswith("\n") else text + "\n"

    reader = csv.reader(feed())
    columns: list[str] | None = None
    while True:
        start = current[0] + 1
        row: list[str] | None = None
        problem = None
        try:
            row = next(reader)
        except StopIteration:
            pass
        except csv.Error as exc:
            problem = f"malformed CSV ({exc})"
        while spoiled:
            number, error = spoiled.pop(0)
            yield number, error, ""
        if problem is not None:
            yield start, problem, ""
            continue
        if row is None:
            break
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if columns is None:
            if row[0].lstrip().startswith("#"):
                continue  # a comment above the header
            columns = _csv_header(row, name, start)
            continue
        if len(row) != len(columns):
            yield start, f"{len(row)} fields, but the header has {len(columns)}", ",".join(row)
            continue
        url = ""
        options: dict[str, Any] = {}
        for column, cell in zip(columns, row, strict=True):
            if column == "url":
                url = cell
            elif cell.strip():
                options[column] = cell
        yield start, url, options or None


def _csv_header(row: list[str], name: str, number: int) -> list[str]:
    columns = [c.strip().lower() for c in row]
    if "url" not in columns:
        raise ImportUsageError(f"the CSV header has no 'url' column (found: {', '.join(row)})", f"{name}:{number}")
    for column in columns:
        if column != "url" and column not in _COLUMNS:
            raise ImportUsageError(
                f"unknown column {column!r} (known: url, {', '.join(OPTION_NAMES)})", f"{name}:{number}")
        if columns.count(column) > 1:
            raise ImportUsageError(f"column {column!r} appears twice", f"{name}:{number}")
    return columns


def records(source: Source, fmt: str | None) -> tuple[str, Iterator[Record | Refusal]]:
    """The detected format and the source's records (refusals interleaved, in line order)."""
    lines = source.lines()
    head: list[tuple[int, str | None, str | None]] = []
    first = None
    if fmt is None:
        for item in lines:  # peek at the first meaningful line, keeping what was read
            head.append(item)
            text = item[1]
            if text is not None and text.strip() and not text.lstrip().startswith("#"):
                first = text
                break
            if len(head) >= 10000:
                break
        fmt = detect_format(source.name, first)
    if fmt not in FORMATS:
        raise ImportUsageError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    chained = _chain(head, lines)
    if fmt == "csv":
        return fmt, _csv_records(chained, source.name)
    if fmt == "jsonl":
        return fmt, _jsonl_records(chained)
    return fmt, _text_records(chained)


def _chain(head: list[Any], rest: Iterator[Any]) -> Iterator[Any]:
    yield from head
    head.clear()
    yield from rest
