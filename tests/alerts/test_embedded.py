"""Alerts on the embedded default (SQLite, no broker: the checks run in the command's own
process, and no ``runner start`` runs): ``runner submit`` and ``runner import`` deliver
what their checks queued before they exit, say on stderr what they could not (it stays in
the outbox, and the next command delivers it), and give up waiting after 10 s; the TUI
delivers while it is open. A loopback JSON webhook is the Apprise target."""

from __future__ import annotations

import sys

import pytest

from db import alerts as outbox
from db import open_store
from tests.support.services import run_cli, runner_env, wait_until
from tests.support.webhook import Receiver

pytestmark = pytest.mark.e2e


def rows(sqlite_url: str) -> list[tuple[str, str, str]]:
    store = open_store(sqlite_url)
    try:
        return [(url, change, state) for _, url, change, state, _ in outbox.outbox_rows(store.dialect)]
    finally:
        store.close()


def test_submit_and_import_deliver_before_they_exit(sqlite_url: str, target, tmp_path) -> None:
    env = runner_env(sqlite_url, None)
    url = target.url("/switch?key=embedded")
    with Receiver() as receiver:
        assert run_cli(["alerts", "add", "ops", receiver.url], env).returncode == 0  # new_failure, recovered
        target.switch["embedded"] = 200
        first = run_cli(["submit", url, "--wait"], env)
        assert first.returncode == 0, first.stderr
        assert receiver.count() == 0 and rows(sqlite_url) == []  # a first check is `new`: not told by default

        target.switch["embedded"] = 500
        broke = run_cli(["submit", url, "--wait"], env)  # exit 1: the check failed
        assert broke.returncode == 1, broke.stderr
        # Delivered before the command exited: no wait here, and no `runner serve`.
        assert receiver.titles() == [f"urltester: new_failure: {url}"]
        assert rows(sqlite_url) == [(url, "new_failure", "sent")]
        assert "outbox" not in broke.stderr

        target.switch["embedded"] = 200
        listed = tmp_path / "urls.txt"
        listed.write_text(url + "\n")
        healed = run_cli(["import", str(listed)], env)  # without --wait: the checks still ran here
        assert healed.returncode == 0, healed.stderr
        assert receiver.titles()[1:] == [f"urltester: recovered: {url}"]


def test_what_is_not_delivered_is_said_and_stays_in_the_outbox(sqlite_url: str, target) -> None:
    env = runner_env(sqlite_url, None)
    url = target.url("/status/503")
    with Receiver(fail_first=1) as receiver:
        target_url = receiver.url.replace("json://", "json://hook:pw77@")
        assert run_cli(["alerts", "add", "ops", target_url, "--on", "new"], env).returncode == 0
        done = run_cli(["submit", url], env)  # the check fails: exit 0 without --wait
        assert done.returncode == 0, done.stderr
        assert receiver.requests == 1 and receiver.count() == 0  # answered 503: retried later, not now
        said = [line for line in done.stderr.splitlines() if "alert ops" in line]
        assert len(said) == 1, done.stderr
        assert "1 change not told yet" in said[0] and "503" in said[0] and "stay in the outbox" in said[0]
        assert "pw77" not in done.stderr
        assert rows(sqlite_url) == [(url, "new", "pending")]


def test_a_service_that_hangs_costs_the_command_10_seconds_at_most(sqlite_url: str, target) -> None:
    env = runner_env(sqlite_url, None)
    with Receiver(hold=True) as receiver:  # takes the request and never answers
        assert run_cli(["alerts", "add", "ops", receiver.url, "--on", "new"], env).returncode == 0
        done = run_cli(["submit", target.url("/ok")], env, timeout=60)
        assert done.returncode == 0, done.stderr
        assert receiver.arrived.is_set()
        assert "alert ops: 1 change not told yet (not delivered within 10 s)" in done.stderr
        assert "Traceback" not in done.stderr
        receiver.release.set()


def test_the_tui_delivers_while_it_is_open(sqlite_url: str, target) -> None:
    from tests.tui.test_e2e_tmux import Tmux

    env = runner_env(sqlite_url, None)
    url = target.url("/status/500")
    with Receiver() as receiver:
        assert run_cli(["alerts", "add", "ops", receiver.url, "--on", "new"], env).returncode == 0
        with Tmux(env, [sys.executable, "-m", "runner", "tui"]) as tmux:
            wait_until(lambda: "Type or paste URLs" in tmux.screen(), 60, message="the TUI to start")
            tmux.type(url)
            tmux.key("Enter")
            wait_until(lambda: receiver.count() == 1, 60, message="the alert delivered while the TUI is open")
            assert receiver.titles() == [f"urltester: new: {url}"]
            tmux.key("C-q")
