"""Lines and arguments no URL can be made of: each is named (FILE:LINE or the argument) and
everything valid around it is recorded, on the real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys

import pytest

from db import JobFilter, open_store
from tests.support.services import ROOT, run_cli, runner_env

pytestmark = [pytest.mark.postgres]


def test_jsonl_lines_with_a_lone_surrogate_or_a_nul_are_refused_and_the_rest_recorded(pg_url, target, tmp_path) -> None:
    f = tmp_path / "hostile.jsonl"
    f.write_text(
        f'{{"url": "{target.url("/ok?before")}"}}\n'
        f'{{"url": "{target.url("/ok")}\\ud800"}}\n'
        f'{{"url": "{target.url("/ok?opt")}", "body_contains": "\\ud800"}}\n'
        f'{{"url": "{target.url("/ok?nul")}", "body_contains": "a\\u0000b"}}\n'
        f'{{"url": "{target.url("/ok?hdr")}", "header": ["X-A: \\u0000"]}}\n'
        f'{{"url": "{target.url("/ok?after")}"}}\n',
        encoding="ascii",
    )
    out = run_cli(["import", str(f), "--batch", "hostile"], runner_env(pg_url, None))
    assert out.returncode == 1, out.stderr
    lines = out.stderr.splitlines()
    assert "Traceback" not in out.stderr
    assert [line.split(": ", 1)[0] for line in lines] == [f"{f}:2", f"{f}:3", f"{f}:4", f"{f}:5"]
    assert "not valid Unicode (lone surrogate U+D800)" in lines[0]
    assert "body_contains: is not valid Unicode (lone surrogate U+D800)" in lines[1]
    assert "body_contains: contains a NUL character" in lines[2]
    assert "header: contains a NUL character" in lines[3]
    store = open_store(pg_url)
    try:
        urls = sorted(j.url for j in store.iter_jobs(JobFilter(batch="hostile")))
    finally:
        store.close()
    assert urls == sorted([target.url("/ok?before"), target.url("/ok?after")])


def test_submit_of_an_argument_that_is_not_utf8_is_named_not_a_traceback(sqlite_url) -> None:
    env = runner_env(sqlite_url, None)
    out = subprocess.run([sys.executable, "-m", "runner", "submit", b"http://h.test/a\xff", "http://h.test/ok"],
                         env=env, capture_output=True, timeout=60, cwd=ROOT)
    stderr = out.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr
    assert "rejected not valid UTF-8 (byte 0xff): 'http://h.test/a\\udcff'" in stderr
    assert out.returncode == 1, stderr


def test_jsonl_lines_nested_too_deeply_are_refused_and_the_rest_recorded(sqlite_url, target, tmp_path) -> None:
    f = tmp_path / "deep.jsonl"
    f.write_text(
        f'{{"url": "{target.url("/ok?before")}"}}\n'
        + "[" * 100_000 + "\n"
        + f'{{"url": "{target.url("/ok?deep")}", "header": ' + "[" * 50_000 + "}\n"
        + "null\n"
        + f'{{"url": "{target.url("/ok?after")}"}}\n'
    )
    out = run_cli(["import", str(f), "--batch", "deep"], runner_env(sqlite_url, None))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{f}:2", f"{f}:3", f"{f}:4"]
    assert "JSON nested more than 32 levels deep" in lines[0] and "JSON nested" in lines[1]
    assert "expected a JSON object" in lines[2]
    assert "2 jobs queued" in out.stdout
