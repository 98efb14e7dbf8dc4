"""End to end: ``runner tui`` in a real terminal (tmux) on PostgreSQL and RabbitMQ, with a
``runner start`` worker doing the check. Types a URL, reads the screen until it says ok."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import pytest

from tests.support.services import ROOT, runner_env, wait_until, worker

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.rabbitmq]


class Tmux:
    """One tmux server of the test's own (its own socket), one window running a command."""

    def __init__(self, env: dict[str, str], command: list[str], size: tuple[int, int] = (120, 40)) -> None:
        self.exe = shutil.which("tmux")
        if self.exe is None:
            pytest.skip("tmux is not installed")
        self.socket = f"urltester-test-{uuid.uuid4().hex[:8]}"
        # The window's size is the terminal's: COLUMNS/LINES (which pytest-xdist's workers
        # set to 80x24) would override it, as Textual honours them.
        env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
        env |= {"TERM": "xterm-256color", "TEXTUAL_ANIMATIONS": "none"}
        subprocess.run([self.exe, "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "tui",
                        "-x", str(size[0]), "-y", str(size[1]), *command],
                       env=env, cwd=ROOT, check=True)

    def screen(self) -> str:
        return self.capture()

    def capture(self, *, escapes: bool = False) -> str:
        """The screen's text; with ``escapes``, with its colours and attributes as SGR codes."""
        result = subprocess.run([self.exe, "-L", self.socket, "capture-pane", "-p", *(["-e"] if escapes else []),
                                 "-t", "tui"], capture_output=True, text=True)
        return result.stdout

    def type(self, text: str) -> None:
        subprocess.run([self.exe, "-L", self.socket, "send-keys", "-t", "tui", "-l", text], check=True)

    def key(self, *keys: str) -> None:
        subprocess.run([self.exe, "-L", self.socket, "send-keys", "-t", "tui", *keys], check=True)

    def close(self) -> None:
        subprocess.run([self.exe, "-L", self.socket, "kill-server"], capture_output=True)

    def __enter__(self) -> Tmux:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        """Closes the server; on a failure, prints the screen first (pytest shows it)."""
        if kind is not None:
            print(self.screen())
        self.close()


def test_tui_shows_result_checked_by_a_worker(pg_url, amqp_url, queue_name, target, tmp_path) -> None:
    env = runner_env(pg_url, amqp_url, queue_name)
    url = target.url("/title?t=e2e+page")
    with (worker(env, "--processes", "1", "--concurrency", "4", log_path=tmp_path / "worker.log"),
          Tmux(env, [sys.executable, "-m", "runner", "tui"], size=(160, 40)) as tmux):  # the broker's URL fits
        wait_until(lambda: "Type or paste URLs" in tmux.screen(), 60, message="the TUI to start")
        wait_until(lambda: "worker process alive" in tmux.screen(), 60,
                   message="the worker's heartbeat in the status line")
        tmux.type(url)
        tmux.key("Enter")
        # A notification that goes away after a few seconds: seen while it is there.
        wait_until(lambda: "Queued 1 URL" in tmux.screen(), 30, message="the notification 'Queued 1 URL'")
        shown = url[: len(target.base) + 4]  # the URL column may cut the rest
        wait_until(lambda: any(shown in line and "✓ ok" in line and "e2e page" in line
                               for line in tmux.screen().splitlines()), 60,
                   message=f"a row for {url} showing ✓ ok")
        screen = tmux.screen()
        assert "broker amqp://guest:***@" in screen or "broker amqp://" in screen
        assert ":guest@" not in screen  # the password is never shown
        tmux.key("C-q")
