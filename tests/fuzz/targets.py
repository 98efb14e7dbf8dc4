"""The fuzz targets: every parser that takes outside input, each with what must hold.

A target is a Hypothesis strategy and a property. The property says what the parser may
do with any input: return a valid value or raise the one error it documents (a clear
message), never any other exception; and where a password is involved, never show it.
tests/fuzz/test_fuzz.py runs each a bounded number of times (the ``ci`` profile);
``scripts/fuzz`` runs a long campaign and counts examples and failures per target.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
from hypothesis import strategies as st

from runner.check.options import (
    OPTION_NAMES,
    CheckOptions,
    parse_condition,
    parse_options,
    parse_status_set,
)
from runner.cli.common import parse_age, parse_since
from runner.errors import ConfigError, InvalidInput, InvalidURL, OptionError
from runner.jobs.intake import Validator
from runner.jobs.readers import ImportUsageError, Source, records
from runner.jobs.settings import from_env
from runner.jobs.urls import _parse, normalise
from runner.taskq.app import MAX_MESSAGE_BYTES, Call, PoisonMessage, decode, encode
from runner.text import mask_url, printable
from tests.fuzz.documents import DOCUMENT_TARGETS


@dataclass(frozen=True)
class Target:
    name: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]


# ---------------------------------------------------------------------------- messages

_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=30)
_compression = st.sampled_from(["application/x-gzip", "gzip", "zlib", "application/x-bz2", "bzip2",
                                "application/x-lzma", "xz", "lzma", "application/zstd", "brotli",
                                ""]) | st.text(max_size=10)


@st.composite
def _message(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """Raw bytes; task-like JSON; or either compressed (or claimed to be) by any codec."""
    import bz2
    import lzma
    import zlib

    kind = draw(st.sampled_from(["bytes", "json", "task", "deep"]))
    if kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "json":
        body = json.dumps(draw(_json)).encode()
    elif kind == "task":
        calls = draw(st.lists(st.fixed_dictionaries(
            {"task": st.text(max_size=8) | _json, "args": st.lists(_json, max_size=3) | _json,
             "kwargs": st.dictionaries(st.text(max_size=5), _json, max_size=2) | _json, "id": _json}), max_size=3))
        body = json.dumps({"v": draw(st.sampled_from([1, 1, 2, "1"])), "calls": calls}).encode()
    else:
        depth = draw(st.integers(1, 5000))
        body = (b"[" * depth) + (b"]" * draw(st.integers(0, depth)))
    headers: dict[str, Any] = draw(st.dictionaries(st.text(max_size=10), _json_leaf, max_size=3))
    if draw(st.booleans()):
        codec = draw(_compression)
        packer = {"application/x-gzip": zlib.compress, "gzip": zlib.compress, "zlib": zlib.compress,
                  "application/x-bz2": bz2.compress, "bzip2": bz2.compress,
                  "application/x-lzma": lzma.compress, "xz": lzma.compress, "lzma": lzma.compress}.get(codec)
        if packer is not None and draw(st.booleans()):
            body = packer(body)
            if draw(st.booleans()):  # damage it
                cut = draw(st.integers(0, len(body)))
                body = body[:cut] + draw(st.binary(max_size=8))
        headers["compression"] = draw(st.sampled_from([codec, codec.upper()])) if codec else draw(_json_leaf)
    return body, headers


def _check_message(message: tuple[bytes, dict[str, Any]]) -> None:
    body, headers = message
    try:
        calls = decode(body, headers)
    except PoisonMessage as exc:
        assert str(exc), "a refusal must say why"
        return
    assert all(isinstance(c, Call) and isinstance(c.task, str) for c in calls)
    assert len(encode(calls)) <= 2 * MAX_MESSAGE_BYTES + 1000  # what was accepted fits the limit


# ---------------------------------------------------------------------------- URLs

_url_text = st.one_of(
    st.text(max_size=80),
    st.builds(lambda scheme, host, rest: f"{scheme}{host}{rest}",
              st.sampled_from(["", "http://", "https://", "HTTP://", "ftp://", "http:", "//"]),
              st.text(st.characters(codec="utf-8"), max_size=30) | st.from_regex(r"[a-z0-9.\-]{1,30}", fullmatch=True)
              | st.sampled_from(["[::1]", "[fe80::1%eth0]", "127.0.0.1:0", "h:99999", "xn--a", "ÄÖ.de", "a..b"]),
              st.text(max_size=40)),
)


def _check_url(text: str) -> None:
    try:
        url = normalise(text)
    except InvalidURL as exc:
        assert str(exc)
        try:
            _parse(text)
        except InvalidURL:
            return
        raise AssertionError(f"the long way accepted what normalise refused: {text!r}") from None
    assert url.startswith(("http://", "https://"))
    url.encode("utf-8")  # storable and sendable
    assert normalise(url) == url, "normalising is idempotent"
    assert _parse(text) == url, "the fast path agrees with the long way"


# ---------------------------------------------------------------------------- import readers

_line = st.one_of(
    st.text(max_size=60),
    st.builds(lambda obj: json.dumps(obj), st.dictionaries(
        st.sampled_from(["url", *OPTION_NAMES, "x"]), _json | st.text(max_size=20), max_size=4)),
    st.sampled_from(["url,method,header", '"http://a.test/,x"', "\ufeffurl", "#c", "", '{"url": "\\ud800"}',
                     '{"url": "http://a.test/", "body_contains": "\\u0000"}', "null"]),
    st.integers(1, 20_000).map(lambda n: '{"url": "http://a.test/", "header": ' + "[" * n + "]" * (n % 3) + "}"),
)


@st.composite
def _import_file(draw: st.DrawFn) -> tuple[str, str, bytes]:
    fmt = draw(st.sampled_from(["text", "csv", "jsonl", None]))
    name = draw(st.sampled_from(["f.txt", "f.csv", "f.jsonl", "f"]))
    lines = draw(st.lists(_line, max_size=8))
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        data += draw(st.binary(max_size=20))
    return fmt or "", name, data


def _check_import(item: tuple[str, str, bytes]) -> None:
    fmt, name, data = item
    validator = Validator(CheckOptions())
    try:
        _, items = records(Source(name, io.BytesIO(data)), fmt or None)
        for record in items:
            number, text, opts = record
            assert isinstance(number, int) and number >= 1
            if isinstance(opts, str):
                assert text, "a refusal says why"
                continue
            try:
                job = validator.job(text, opts)
            except InvalidInput as exc:
                assert str(exc)
                continue
            if job is not None:
                url, options = job
                for value in job:
                    value.encode("utf-8")
                    assert "\x00" not in value and "\\u0000" not in value, "PostgreSQL stores no NUL"
                json.loads(options)
    except ImportUsageError as exc:
        assert str(exc)


# ---------------------------------------------------------------------------- options

_condition_text = st.one_of(
    st.text(max_size=40),
    st.builds(lambda f, op, v: f"{f}{op}{v}",
              st.sampled_from(["status", "total_ms", "body", "header.x-a", "cert_days", "bytes", "title", "x"]),
              st.sampled_from(["<", "<=", "==", "!=", ">", ">=", " contains ", " ~ ", ""]),
              st.text(max_size=12) | st.integers().map(str) | st.floats().map(str)),
)


def _check_condition(text: str) -> None:
    try:
        condition = parse_condition(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert parse_condition(str(condition)) == condition, "the stored spelling parses to the same condition"


_status_text = st.one_of(st.text(max_size=20), st.from_regex(r"[0-9x, \-]{1,20}", fullmatch=True))


def _check_status_set(text: str) -> None:
    try:
        status = parse_status_set(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert parse_status_set(str(status)) == status


_option_value = _json | st.text(max_size=20) | st.sampled_from(["10k", "1MiB", "5 MiB", "1e9", "-1", "inf", "nan",
                                                                 "²", "0x10", "1_000", "GET", "2xx,304"])


def _check_options(raw: dict[str, Any]) -> None:
    try:
        options = parse_options(raw)
    except OptionError as exc:
        assert str(exc)
        return
    json.dumps(options.to_json()).encode("utf-8")
    assert parse_options(options.to_json()) == options, "stored options read back the same"


_age_text = st.one_of(st.text(max_size=12), st.builds(lambda n, u: f"{n}{u}", st.text("0123456789.²٣", max_size=25),
                                                     st.sampled_from(["s", "m", "h", "d", "w", "", "x"])))


def _check_durations(text: str) -> None:
    for parse in (parse_age, parse_since):
        try:
            parse(text)
        except typer.BadParameter as exc:
            assert str(exc)


# ---------------------------------------------------------------------------- settings

_password = st.text(st.characters(codec="utf-8", exclude_characters="@\x00") | st.sampled_from("#?/[]:%"),
                    min_size=6, max_size=20).filter(
    lambda p: p.strip() == p and "\n" not in p)


@st.composite
def _settings_env(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    scheme = draw(st.sampled_from(["postgresql", "postgres", "sqlite", "amqp", "amqps", "mysql", "redis", ""]))
    password = "Zz" + draw(_password) + "Qq"  # marked, so that no other part of the URL contains it
    host = draw(st.sampled_from(["127.0.0.1", "db.test", "[::1]", "h:5432", "h:x", ""]))
    url = f"{scheme}://user:{password}@{host}/{draw(st.text(max_size=8))}"
    key = draw(st.sampled_from(["URLTESTER_DATABASE_URL", "URLTESTER_BROKER_URL"]))
    env = {key: url}
    if draw(st.booleans()):
        env["URLTESTER_PUBLISH_TIMEOUT"] = draw(st.text(max_size=6))
    return env, password


def _check_settings(item: tuple[dict[str, str], str]) -> None:
    env, password = item
    try:
        settings = from_env(env)
    except ConfigError as exc:
        assert password not in str(exc), f"the error shows the password: {exc}"
        return
    assert isinstance(settings.immediate, bool)
    for shown in (settings.database_shown, settings.broker_shown, printable(settings.database_shown)):
        assert password not in shown, f"the password is shown: {shown}"
    for url in env.values():
        assert password not in mask_url(url)


TARGETS: tuple[Target, ...] = (
    Target("task messages", _message(), _check_message),
    Target("URL normalisation", _url_text, _check_url),
    Target("import readers (text, CSV, JSON Lines)", _import_file(), _check_import),
    Target("conditions", _condition_text, _check_condition),
    Target("status sets", _status_text, _check_status_set),
    Target("options (sizes, numbers, lists)", st.dictionaries(
        st.sampled_from([*OPTION_NAMES, "headers", "conditions"]), _option_value, max_size=4), _check_options),
    Target("durations", _age_text, _check_durations),
    Target("settings URLs", _settings_env(), _check_settings),
    *(Target(name, strategy, check) for name, strategy, check in DOCUMENT_TARGETS),
)
