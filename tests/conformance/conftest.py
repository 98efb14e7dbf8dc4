"""The conformance suite's servers and referee: real nginx, Apache httpd and curl.

Every server runs for the whole session in one temporary directory (world-readable, so
the servers' www-data workers can read it when the tests run as root) and is stopped at
the end. Without the tools the suite skips with the reason; with CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.check.checker import Checker

from . import servers


@dataclass
class Site:
    base: Path
    ca: Path
    certs: dict[str, tuple[Path, Path]]
    nginx: servers.Running
    apache: servers.Running
    http10: servers.Running


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    for tool in servers.TOOLS:
        servers.require(tool)
    try:
        from .pki import make_pki
    except ImportError:
        message = "the conformance suite makes its test CA with cryptography: pip install -e '.[test]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    base = Path(tempfile.mkdtemp(prefix="urltester-conformance-"))
    base.chmod(0o755)
    started: list[servers.Running] = []
    try:
        servers.write_site(base / "www")
        (base / "pki").mkdir()
        ca, certs = make_pki(base / "pki")
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        nginx = servers.start_nginx(base, certs)
        started.append(nginx)
        apache = servers.start_apache(base)
        started.append(apache)
        http10 = servers.start_http10(base)
        started.append(http10)
        yield Site(base, ca, certs, nginx, apache, http10)
    finally:
        for running in started:
            running.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def checker(site: Site) -> Iterator[Checker]:
    """A Checker that trusts the test CA only (as curl --cacert does)."""
    c = Checker(ca_bundle=str(site.ca))
    yield c
    c.close()


def curl(url: str, *args: str, ca: Path | None = None) -> dict[str, Any]:
    """curl's own account of fetching ``url`` (its -w %{json} variables)."""
    sink = () if "-o" in args else ("-o", "/dev/null")
    command = [servers.require("curl"), "-s", *sink, "--max-time", "20",
               "--noproxy", "*", "-w", "%{json}", *args, url]
    if ca is not None:
        command[1:1] = ["--cacert", str(ca)]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    out = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    return json.loads(out.stdout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.conformance)
