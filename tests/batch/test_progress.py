"""`runner import`'s progress line in a real terminal (tmux, 80 columns) and in a pipe."""

from __future__ import annotations

import re
import sys

import pytest

from tests.support.services import run_cli, runner_env, wait_until
from tests.tui.test_e2e_tmux import Tmux

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.rabbitmq]

PROGRESS = re.compile(r"\d+(\.\d)?[kM]? lines \d+(\.\d)?[kM]? bad \d+(\.\d)?[kM]?/s \d+:\d\d:\d\d$")


def url_file(tmp_path, n: int):
    path = tmp_path / "nightly-urls.txt"
    # No worker runs: the jobs only need to be recorded and published.
    path.write_text("".join("ftp://bad.example/\n" if i % 20_000 == 7 else f"http://127.0.0.1:9/p/{i}\n"
                            for i in range(n)))
    return path


def test_progress_is_one_line_within_80_columns_and_is_cleared(pg_url, amqp_url, queue_name, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    path = url_file(tmp_path, 80_000)
    command = f"{sys.executable} -m runner import {path}; echo exit=$?; sleep 600"
    with Tmux(env, ["sh", "-c", command], size=(80, 24)) as tmux:
        seen: list[list[str]] = []

        def progress_lines() -> list[str]:
            lines = [line for line in tmux.screen().splitlines() if " lines " in line and "/s" in line]
            if lines:
                seen.append(lines)
            return lines

        wait_until(lambda: progress_lines(), 60, message="the progress line")
        wait_until(lambda: (progress_lines(), "exit=" in tmux.screen())[1], 120, interval=0.2,
                   message="the import to end (every progress line seen on the way)")
        for lines in seen:
            assert len(lines) == 1, lines  # redrawn in place: never a second copy
            assert len(lines[0]) <= 80 and PROGRESS.search(lines[0].rstrip()), lines[0]  # whole: not wrapped
            assert lines[0].startswith("nightly-urls.…") or lines[0].startswith("nightly-urls.txt")
        final = tmux.screen()
        assert "exit=1" in final  # some lines were rejected
        joined = final.replace("\n", "")  # long lines wrap at 80 columns
        assert "nightly-urls.txt:8: unsupported scheme 'ftp'" in joined  # rejected lines stay, above
        assert not [line for line in final.splitlines() if PROGRESS.search(line.rstrip())]  # cleared at the end
        assert "80,000 lines, 79,996 jobs queued" in joined


def test_no_progress_when_stderr_is_not_a_terminal(pg_url, amqp_url, queue_name, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    out = run_cli(["import", str(url_file(tmp_path, 40_001))], env)
    assert out.returncode == 1, out.stderr
    assert "\r" not in out.stderr and "\x1b" not in out.stderr and " bad " not in out.stderr
    assert out.stderr.splitlines() == [f"{tmp_path}/nightly-urls.txt:{n}: unsupported scheme 'ftp' "
                                       "(use http or https): "
                                       "'ftp://bad.example/'" for n in (8, 20008)]
