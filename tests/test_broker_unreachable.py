"""`runner submit` when RabbitMQ is not there: said at once, with how long it keeps trying;
a broker URL that can never work (a refused login, a host that does not resolve) fails
fast, in one line, with exit 2 (fix the settings)."""

import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from runner.errors import ConfigError
from runner.jobs.runtime import Runtime
from runner.jobs.settings import Settings
from tests.support.services import ROOT, run_cli, runner_env


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connections are refused


def test_submit_says_at_once_that_the_broker_is_unreachable_and_for_how_long(sqlite_url) -> None:
    env = runner_env(sqlite_url, f"amqp://guest:guest@127.0.0.1:{_closed_port()}//", URLTESTER_PUBLISH_TIMEOUT="10")
    proc = subprocess.Popen([sys.executable, "-m", "runner", "submit", "http://127.0.0.1:9/x"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stderr.readline()
        still_trying = proc.poll() is None  # the line came while the 10 s of retries run
        assert "is unreachable" in first and "keeps trying for 10 s" in first, first
        assert still_trying
        rest = proc.stderr.read()
        assert proc.wait(60) == 3 and "requeue --stale 0s" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.rabbitmq
def test_a_refused_login_fails_fast_in_one_line_with_exit_2(sqlite_url, amqp_url) -> None:
    parts = urlsplit(amqp_url)
    bad = parts._replace(netloc=f"guest:wrong-pw@{parts.hostname}:{parts.port or 5672}").geturl()
    began = time.monotonic()
    out = run_cli(["submit", "http://127.0.0.1:9/x"], runner_env(sqlite_url, bad, URLTESTER_PUBLISH_TIMEOUT="120"))
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "refused the login" in out.stderr and "wrong-pw" not in out.stderr
    assert time.monotonic() - began < 60  # not the 120 s of publish retries
    listed = run_cli(["results", "--format", "json"], runner_env(sqlite_url, None))
    assert listed.stdout == ""  # nothing recorded for a submit that could never be sent


def test_a_host_name_that_does_not_resolve_is_a_setting_to_fix(sqlite_url, monkeypatch) -> None:
    # No DNS query leaves the machine: the resolver's answer for a missing name is given here.
    def no_such_name(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    rt = Runtime(Settings(database_url=sqlite_url, broker_url="amqp://guest:guest@rabbit.example:5672//"))
    try:
        with pytest.raises(ConfigError, match="does not resolve"):
            rt.broker_warning()
    finally:
        rt.close()
