"""`runner import` on the embedded default (SQLite, checks in-process): the CLI contract."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from db import JobFilter, open_store
from runner.check.options import OPTION_NAMES
from tests.support.services import run_cli, runner_env


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    return runner_env(sqlite_url, None)


def jobs(sqlite_url: str, batch: str | None = None) -> list:
    store = open_store(sqlite_url)
    try:
        return list(store.iter_jobs(JobFilter(batch=batch)))
    finally:
        store.close()


def test_text_import_reports_each_bad_line_with_its_number_and_queues_the_rest(env, sqlite_url, target,
                                                                               tmp_path) -> None:
    f = tmp_path / "nightly.txt"
    f.write_bytes(
        b"# nightly list\n"
        + target.url("/ok").encode() + b"\n"
        + b"ftp://files.test/x\n"
        + b"http://\n"
        + b"\n"
        + target.url("/status/404").encode() + b"?x=\xff\n"
        + b"https://" + b"a" * 300_000 + b".test/\n"
        + target.url("/ok?second").encode() + b"\n"
    )
    out = run_cli(["import", str(f), "--batch", "nightly"], env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines() == [
        f"{f}:3: unsupported scheme 'ftp' (use http or https): 'ftp://files.test/x'",
        f"{f}:4: no host: 'http://'",
        f"{f}:6: undecodable bytes (not UTF-8) at byte {len(target.url('/status/404')) + 4}",
        f"{f}:7: line of 300015 bytes is longer than the limit of 256 KiB",
    ]
    assert "8 lines, 2 jobs queued in batch 'nightly'" in out.stdout and "4 rejected" in out.stdout
    done = jobs(sqlite_url, "nightly")
    assert sorted(j.url for j in done) == sorted([target.url("/ok"), target.url("/ok?second")])
    assert all(j.state == "done" for j in done)  # embedded: checked in this process before exit


def test_csv_and_jsonl_options_override_the_file_wide_flags(env, sqlite_url, target, tmp_path) -> None:
    csv_file = tmp_path / "jobs.csv"
    csv_file.write_text(
        "url,method,expect_status,header\n"
        f"{target.url('/ok')},,,\n"
        f'{target.url("/status/404")},GET,404,"X-A: 1\nX-B: 2"\n'
        f"{target.url('/ok?bad')},,999,\n"
    )
    out = run_cli(["import", str(csv_file), "--batch", "c", "--method", "HEAD", "--deadline", "5"], env)
    assert out.returncode == 1
    assert out.stderr.strip() == (f"{csv_file}:5: expect_status: '999': status codes are between 100 and 599: "
                                  f"'{target.url('/ok?bad')}'")
    by_url = {j.url: j for j in jobs(sqlite_url, "c")}
    assert by_url[target.url("/ok")].options == {"method": "HEAD", "deadline": 5.0}
    assert by_url[target.url("/status/404")].options == {
        "deadline": 5.0, "expect_status": "404", "header": ["X-A: 1", "X-B: 2"]}
    assert by_url[target.url("/status/404")].ok is True  # 404 was expected on that line

    jsonl = tmp_path / "jobs.data"  # unknown extension: detected from the content
    jsonl.write_text(
        json.dumps({"url": target.url("/ok"), "retries": 1}) + "\n"
        + json.dumps({"url": target.url("/ok"), "colour": "red"}) + "\n"
        + "not json\n"
    )
    out = run_cli(["import", str(jsonl), "--batch", "j"], env)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert lines[0].startswith(f"{jsonl}:2: colour: unknown option")
    assert lines[1].startswith(f"{jsonl}:3: not valid JSON")
    assert "(jsonl)" in out.stdout
    [job] = jobs(sqlite_url, "j")
    assert job.options == {"retries": 1}


def test_strict_queues_nothing_when_a_line_is_bad(env, sqlite_url, target, tmp_path) -> None:
    f = tmp_path / "s.txt"
    f.write_text(f"{target.url('/ok')}\nnot a url\n{target.url('/ok?2')}\n")
    out = run_cli(["import", str(f), "--strict"], env)
    assert out.returncode == 1
    assert f"{f}:2: URL contains spaces or control characters: 'not a url'" in out.stderr
    assert "--strict: 1 line rejected; nothing queued" in out.stderr
    assert jobs(sqlite_url) == []
    f.write_text(f"{target.url('/ok')}\n{target.url('/ok?2')}\n")
    assert run_cli(["import", str(f), "--strict", "--quiet"], env).returncode == 0
    assert len(jobs(sqlite_url)) == 2


def test_duplicates_are_queued_once_unless_kept(env, sqlite_url, target) -> None:
    urls = f"{target.url('/ok')}\n{target.url('/ok')}\n{target.url('/ok').upper().replace('/OK', '/ok')}\n"
    out = run_cli(["import", "-", "--batch", "d"], env, input=urls)
    assert out.returncode == 0, out.stderr
    assert "1 jobs queued" in out.stdout and "2 duplicates" in out.stdout
    out = run_cli(["import", "-", "--batch", "k", "--keep-duplicates"], env, input=urls)
    assert "3 jobs queued" in out.stdout
    assert len(jobs(sqlite_url, "d")) == 1 and len(jobs(sqlite_url, "k")) == 3


def test_same_idempotency_key_never_queues_a_line_twice_and_resumes_the_rest(env, sqlite_url, target, tmp_path) -> None:
    f = tmp_path / "cron.txt"
    f.write_text("".join(f"{target.url('/ok')}?n={i}\n" for i in range(3)))
    first = run_cli(["import", str(f), "--idempotency-key", "2026-11-27"], env)
    assert first.returncode == 0 and "3 jobs queued" in first.stdout
    again = run_cli(["import", str(f), "--idempotency-key", "2026-11-27"], env)
    assert again.returncode == 0 and "0 jobs queued" in again.stdout
    assert "3 already recorded by an earlier run" in again.stdout
    # A run that died after two chunks' worth: the retry records only what is missing.
    f.write_text("".join(f"{target.url('/ok')}?n={i}\n" for i in range(5)))
    resumed = run_cli(["import", str(f), "--idempotency-key", "2026-11-27"], env)
    assert "2 jobs queued" in resumed.stdout, resumed.stdout
    assert sorted(j.url for j in jobs(sqlite_url)) == sorted(f"{target.url('/ok')}?n={i}" for i in range(5))


def test_wait_prints_a_summary_and_exits_1_when_a_check_failed(env, target) -> None:
    urls = "\n".join([target.url("/ok"), target.url("/ok?ms=150"), target.url("/status/500"),
                      target.url("/status/404")]) + "\n"
    out = run_cli(["import", "-", "--wait", "--wait-timeout", "60", "--batch", "w"], env, input=urls)
    assert out.returncode == 1, out.stderr
    assert "checked 4 of 4: ok 2, failed 2 (http_error 2)" in out.stdout
    slowest = [line for line in out.stdout.splitlines() if line.startswith("slowest")]
    assert slowest and "ms=150" in slowest[0]
    ok = run_cli(["import", "-", "--wait", "--quiet"], env, input=target.url("/ok") + "\n")
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""


def test_usage_errors_exit_2_and_queue_nothing(env, sqlite_url, tmp_path) -> None:
    missing = run_cli(["import", str(tmp_path / "nope.txt")], env)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "nope.txt" in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("url,colour\nhttps://a.test/,red\n")
    out = run_cli(["import", str(bad)], env)
    assert out.returncode == 2 and f"{bad}:1: unknown column 'colour'" in out.stderr
    assert run_cli(["import", "-", "--format", "xml"], env, input="").returncode == 2
    assert run_cli(["import", "-", "--expect-status", "abc"], env, input="a.test\n").returncode == 2
    assert jobs(sqlite_url) == []


def test_results_junit_reads_back_with_a_real_xml_parser(env, target) -> None:
    urls = "\n".join([target.url("/ok"), target.url("/status/503?retry=no"),
                      target.url("/title?t=%01%3C%26")]) + "\n"
    run_cli(["import", "-", "--batch", "ci", "--header", "X-Run: 1", "--deadline", "5"], env, input=urls)
    out = run_cli(["results", "--batch", "ci", "--format", "junit"], env)
    assert out.returncode == 0, out.stderr
    root = ET.fromstring(out.stdout)
    [suite] = root.findall("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("skipped") == "0"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == {target.url("/ok"), target.url("/status/503?retry=no"), target.url("/title?t=%01%3C%26")}
    failure = cases[target.url("/status/503?retry=no")].find("failure")
    assert failure is not None and failure.get("type") == "http_error"
    assert failure.get("message").startswith("http_error")
    assert "outcome: http_error" in failure.text
    assert cases[target.url("/ok")].find("failure") is None
    assert float(cases[target.url("/ok")].get("time")) >= 0
    assert cases[target.url("/ok")].get("classname") == "urltester.ci"


def test_prune_deletes_only_old_done_jobs(env, sqlite_url, target) -> None:
    run_cli(["import", "-", "--batch", "old"], env, input=target.url("/ok") + "\n")
    kept = run_cli(["prune", "--older-than", "30d"], env)
    assert kept.returncode == 0 and "pruned 0 done jobs" in kept.stdout
    gone = run_cli(["prune", "--older-than", "0s"], env)
    assert gone.returncode == 0 and "pruned 1 done job " in gone.stdout
    assert jobs(sqlite_url) == []
    assert run_cli(["prune", "--older-than", "soon"], env).returncode == 2


def test_import_takes_every_check_option_flag_submit_takes(env, sqlite_url, target, tmp_path) -> None:
    """One definition of the flags for both commands (`runner import` once lacked --retries)."""
    def flags(command: str) -> set[str]:
        out = run_cli([command, "--help"], {**env, "COLUMNS": "200"})
        assert out.returncode == 0, out.stderr
        return set(re.findall(r"(?m)^\s+(--[a-z-]+)", out.stdout))

    every_option = {"--" + name.replace("_", "-") for name in OPTION_NAMES}  # the check's own list
    assert every_option <= flags("submit") and every_option <= flags("import")
    f = tmp_path / "one.txt"
    f.write_text(target.url("/ok") + "\n")
    out = run_cli(["import", str(f), "--batch", "r", "--retries", "2", "--max-redirects", "0"], env)
    assert out.returncode == 0, out.stderr
    [job] = jobs(sqlite_url, "r")
    assert job.options == {"retries": 2, "max_redirects": 0}
    bad = run_cli(["import", str(f), "--retries", "0"], env)
    assert bad.returncode == 2 and "retries: must be between 1 and 10" in bad.stderr
