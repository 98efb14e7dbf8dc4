"""Installs are reproducible: every imported package declared and bounded, the lock pins them.

The lock files are what scripts/run, scripts/test, CI and scripts/install install from
(``pip install --require-hashes``); pyproject.toml's bounds are what scripts/lock resolves in.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
TEST = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]
# Our packages, and the modules of scripts/ (the benchmarks' helpers some tests reuse).
OURS = {"runner", "db", "tui", "tests", *(p.stem for p in (ROOT / "scripts").glob("*.py"))}


def imported_top_levels(*packages: str) -> set[str]:
    names: set[str] = set()
    for pkg in packages:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in OURS}


def read_lock(name: str) -> dict[str, tuple[Version, int]]:
    """{package: (pinned version, number of hashes)} from a pip requirements lock."""
    text = (ROOT / name).read_text()
    pins: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", block)
        if m:
            pins[canonicalize_name(m.group(1).split("[")[0])] = (Version(m.group(2)), block.count("--hash=sha256:"))
    return pins


def test_every_imported_package_is_declared() -> None:
    """rich, urllib3, amqp ... are imported by our code, so they are ours to bound, not a
    transitive accident of textual, requests or kombu."""
    declared = {canonicalize_name(r.name) for r in RUNTIME}
    dists = md.packages_distributions()
    missing = []
    for module in sorted(imported_top_levels("runner", "db", "tui")):
        owners = {canonicalize_name(d) for d in dists.get(module, [module])}
        if not owners & declared:
            missing.append(f"{module} (from {', '.join(sorted(owners))})")
    assert not missing, f"imported but not in [project] dependencies: {missing}"
    test_declared = declared | {canonicalize_name(r.name) for r in TEST}
    for module in imported_top_levels("tests"):
        owners = {canonicalize_name(d) for d in dists.get(module, [module])}
        # packaging comes with pytest, which is declared.
        assert owners & test_declared or module == "packaging", f"tests import {module}, not declared"


@pytest.mark.parametrize("req", RUNTIME + TEST, ids=str)
def test_every_dependency_has_a_lower_and_an_upper_bound(req: Requirement) -> None:
    ops = {s.operator for s in req.specifier}
    assert ">=" in ops and "<" in ops, f"{req}: bound it like 'name>=PROVEN,<NEXT_MAJOR'"


@pytest.mark.parametrize(("lock", "reqs"), [("requirements.lock", RUNTIME),
                                            ("requirements-test.lock", RUNTIME + TEST)])
def test_the_locks_pin_every_dependency_within_its_bounds_with_hashes(lock: str, reqs: list[Requirement]) -> None:
    pins = read_lock(lock)
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {lock}: run scripts/lock"
        version, hashes = pins[name]
        assert version in req.specifier, f"{lock} pins {name}=={version}, outside {req}: run scripts/lock"
    assert all(h for _, h in pins.values()), f"{lock} has a pin without a hash"
    if lock == "requirements.lock":
        assert not {canonicalize_name(r.name) for r in TEST} & set(pins), "test tools in the production lock"


def test_this_environment_is_the_test_lock() -> None:
    """scripts/test installs from requirements-test.lock: what the suite runs on is what it pins."""
    drift = []
    for name, (version, _) in read_lock("requirements-test.lock").items():
        try:
            installed = Version(md.version(name))
        except md.PackageNotFoundError:
            continue  # a package for another platform or Python (the lock is universal)
        if installed != version:
            drift.append(f"{name} {installed} installed, {version} locked")
    assert not drift, drift


def test_install_refuses_a_missing_prefix_with_a_usage_line() -> None:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "install")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.startswith("usage: scripts/install PREFIX")
