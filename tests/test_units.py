"""The service files in scripts/: systemd units that systemd accepts, and a crontab whose
comments are true (run with bash and flock(1), as cron would run them)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import ROOT

SCRIPTS = ROOT / "scripts"
UNITS = ("urltester-worker.service", "urltester-import.service", "urltester-import.timer")
RUNNER = str(Path(sys.executable).parent / "runner")


def unit(name: str) -> dict[str, list[str]]:
    """KEY -> values of a unit file (every section; comments dropped)."""
    out: dict[str, list[str]] = {}
    for line in (SCRIPTS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
                    reason="systemd-analyze not installed (apt-get install systemd)")
def test_systemd_accepts_the_units_without_a_warning(tmp_path) -> None:
    for name in UNITS:  # the venv's runner in place of /opt/urltester's, which is not here
        (tmp_path / name).write_text((SCRIPTS / name).read_text().replace("/opt/urltester/.venv/bin/runner", RUNNER))
    out = subprocess.run(["systemd-analyze", "verify", *[str(tmp_path / n) for n in UNITS]],
                         capture_output=True, text=True, timeout=60)
    # verify only warns about a misspelt value ("Failed to parse ..., ignoring"): any output fails.
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


def test_the_worker_unit_is_notify_with_a_watchdog_and_a_link_local_backstop() -> None:
    worker = unit("urltester-worker.service")
    assert worker["Type"] == ["notify"] and worker["NotifyAccess"] == ["main"]
    assert int(worker["WatchdogSec"][0]) >= 30  # the reconnect backoff leaves a loop quiet for up to ~20 s
    assert worker["IPAddressDeny"] == ["link-local"]
    shutdown = float(re.search(r"--shutdown-timeout (\d+)", worker["ExecStart"][0]).group(1))
    assert int(worker["TimeoutStopSec"][0]) > shutdown
    for kept in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert kept in worker, f"hardening {kept} lost"


def test_the_import_service_runs_todays_file_with_todays_key(tmp_path) -> None:
    """The ExecStart as systemd hands it to bash ($$ -> $, %% -> %), runner replaced by echo."""
    [command] = unit("urltester-import.service")["ExecStart"]
    command = command.replace("$$", "$").replace("%%", "%").replace("/opt/urltester/.venv/bin/runner", "/bin/echo")
    argv = ["/bin/bash", "-c", re.fullmatch(r"/bin/bash -c '(.*)'", command).group(1)]
    today = subprocess.run(["date", "+%F"], capture_output=True, text=True).stdout.strip()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == (f"import /srv/exports/urls-{today}.csv --batch nightly {today} "
                                  f"--idempotency-key nightly-{today}")


def cron_lines() -> dict[str, str]:
    """The crontab's jobs by the runner command they run, as cron hands them to $SHELL."""
    jobs = {}
    for line in (SCRIPTS / "crontab.example").read_text().splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and not line.startswith("#") and "=" not in fields[0]:
            command = fields[5].replace("\\%", "%")  # cron: \% is a literal %
            verb = re.search(r'"\$RUNNER" (\w+)', command).group(1)
            jobs[verb] = command
    return jobs


@pytest.mark.skipif(shutil.which("flock") is None, reason="flock(1) not installed (util-linux)")
@pytest.mark.parametrize("verb", ["import", "requeue", "prune"])
def test_a_cron_job_that_overlaps_exits_75_and_says_so_and_refused_lines_stay_exit_1(verb, tmp_path) -> None:
    command = cron_lines()[verb].replace("/run/lock/", f"{tmp_path}/")
    fake = tmp_path / "runner"
    fake.write_text("#!/bin/sh\necho \"ran $1\" >> \"$(dirname \"$0\")/ran\"\nexit 1\n")  # 1: some lines refused
    fake.chmod(0o755)
    (tmp_path / "env").write_text("URLTESTER_QUEUE=urltester\n")
    env = {"PATH": os.environ["PATH"], "RUNNER": str(fake), "ENVFILE": str(tmp_path / "env")}
    lock = tmp_path / f"urltester-{verb}.lock"
    with open(lock, "w") as held:  # the previous run, still going
        fcntl.flock(held, fcntl.LOCK_EX)
        out = subprocess.run(["/bin/bash", "-c", command], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 75
    assert out.stdout.strip() == f"urltester {verb} skipped: the previous one still holds {lock}"  # cron mails it
    assert not (tmp_path / "ran").exists()
    out = subprocess.run(["/bin/bash", "-c", command], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "skipped" not in out.stdout
    assert (tmp_path / "ran").read_text() == f"ran {verb}\n"
