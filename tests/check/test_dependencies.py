"""The installed libraries are at least the floors where the check's promises hold.

pip keeps the floors in pyproject.toml at install time; this catches an environment
built another way (a distro package, a stale venv, a lock file that drifted).
"""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# name -> (first version that keeps the promise, the promise)
FLOORS = {
    "requests": ("2.32.3", "calls build_connection_pool_key_attributes, so our TLS context is used"),
    "urllib3": ("2.6", "decompresses a read at a time (CVE-2025-66471): gzip bombs stay capped"),
    "tenacity": ("8.3", "sets upcoming_sleep before stop: no Retry-After wait past the deadline"),
    "idna": ("3.7", "UTS #46 host names, without the CVE-2024-3651 slowdown"),
}


def _declared() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(text) for text in project["dependencies"]]
    return {req.name.lower(): req for req in reqs}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_pyproject_declares_the_floor(name: str) -> None:
    floor, promise = FLOORS[name]
    req = _declared().get(name)
    assert req is not None, f"pyproject.toml must depend on {name} ({promise})"
    assert not req.specifier.contains(str(_below(floor))), (
        f"pyproject.toml allows {name} {_below(floor)}, below {floor}: {promise}")


@pytest.mark.parametrize("name", sorted(_declared()))
def test_installed_versions_meet_pyproject(name: str) -> None:
    req = _declared()[name]
    installed = version(name)
    assert req.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed; pyproject.toml wants {req.specifier}")


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_installed_versions_meet_the_floors(name: str) -> None:
    floor, promise = FLOORS[name]
    assert Version(version(name)) >= Version(floor), (
        f"{name} {version(name)} is installed, below {floor}: {promise}")


def _below(floor: str) -> Version:
    """A version just below ``floor`` (2.6 -> 2.5.999)."""
    parts = [int(p) for p in floor.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    parts[-1] -= 1
    return Version(".".join(map(str, parts)) + ".999")
