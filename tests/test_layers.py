"""The layers' import rules, read from the import statements (ast), so they stay true.

Each rule names the arrow it keeps. On the flat runner/ of before, these failed:
``cli.py ⇄ cli_import.py/cli_tui.py`` and ``service.py ⇄ tasks.py`` were cycles (the
no-cycle rule), and ``consumer.py`` (the task runner) imported ``service.Runtime`` (the
application: "taskq imports nothing of jobs").
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("runner", "tui", "db")
LEAVES = {"runner.errors", "runner.text", "runner.backoff", "runner.version", "runner.metrics", "runner.fields"}
THIRD_PARTY_OWNERS = {  # a library -> the only layer that may import it
    "kombu": "runner.taskq", "amqp": "runner.taskq",
    "requests": "runner.check", "urllib3": "runner.check",
    "psycopg2": "db",
    "typer": "runner.cli",
    "textual": "tui",
    "prometheus_client": "runner.metrics",  # a leaf: every layer counts through it
    "fastapi": "runner.api", "starlette": "runner.api", "uvicorn": "runner.api",
    # Reading documents (runner/discover): the parsers of HTML, Markdown and sitemaps.
    "lxml": "runner.discover", "markdown_it": "runner.discover", "linkify_it": "runner.discover",
    "defusedxml": "runner.discover",
    "apprise": "runner.jobs",  # alerts' delivery (runner/jobs/alerts.py)
}
ENTRY_POINTS = {"tui.__main__", "runner.__main__"}  # `python -m`: composition roots, like the CLI


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def imports_of(name: str, path: Path) -> set[str]:
    """Every module (or name in a module) ``name`` imports, relative imports resolved.

    ``from pkg import mod`` counts as importing ``pkg.mod``; TYPE_CHECKING imports count.
    """
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def ours(target: str, known: dict[str, Path]) -> str | None:
    """The module of ours that ``target`` names (a module, or a name inside one)."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def layer(name: str) -> str:
    if name in LEAVES:
        return "leaf"
    parts = name.split(".")
    if parts[0] == "runner" and len(parts) > 1:
        return f"runner.{parts[1]}"
    return parts[0]


ALLOWED = {  # layer -> the layers it may import (besides itself and the leaves)
    "leaf": set(),
    "db": set(),
    "runner.check": set(),
    "runner.taskq": set(),
    "runner.discover": set(),  # parsers over bytes a caller hands in: fetches nothing
    "runner.jobs": {"runner.check", "runner.taskq", "runner.discover", "db"},
    "runner.cli": {"runner.jobs", "runner.check", "runner.taskq", "db", "tui", "runner.api"},
    "runner.api": {"runner.jobs", "runner.check", "db"},
    "tui": {"runner.jobs", "db"},
    "runner": set(),
}


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        edges[name] = {m for t in imports_of(name, path) if (m := ours(t, known)) and m != name}
    return edges


def test_every_arrow_points_down() -> None:
    wrong = []
    for name, targets in graph().items():
        if name in ENTRY_POINTS:
            continue
        for target in targets:
            src, dst = layer(name), layer(target)
            if src == "leaf" and dst != "runner":
                wrong.append(f"{name} -> {target} (a leaf imports nothing of ours)")
            elif dst in (src, "leaf", "runner"):  # within a layer, a leaf, the package docstring
                continue
            elif dst not in ALLOWED[src]:
                wrong.append(f"{name} -> {target} ({src} may not import {dst})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_each_library_has_one_owner() -> None:
    wrong = []
    for name, path in modules().items():
        if name in ENTRY_POINTS:
            continue
        for target in imports_of(name, path):
            top = target.split(".")[0]
            owner = THIRD_PARTY_OWNERS.get(top)
            if owner and owner not in (layer(name), name):
                wrong.append(f"{name} imports {top} (only {owner} may)")
    assert not wrong, "\n".join(sorted(wrong))


def test_each_package_says_what_it_owns() -> None:
    for pkg in ("runner", "runner/taskq", "runner/check", "runner/discover", "runner/jobs", "runner/cli",
                "runner/api", "tui", "db"):
        doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"{pkg}/__init__.py has no docstring saying what it owns"


@pytest.mark.parametrize("forbidden", ["kombu", "psycopg2", "typer"])
def test_the_check_imports_alone(forbidden: str) -> None:
    code = f"import sys, runner.check.checker, runner.check.options; sys.exit({forbidden!r} in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0, \
        f"import runner.check pulls in {forbidden}"


@pytest.mark.parametrize("forbidden", ["kombu", "psycopg2", "typer", "requests", "lxml"])
def test_the_check_and_the_link_reader_import_alone(forbidden: str) -> None:
    """A crawl's worker reads a page's links with runner.discover beside runner.check: neither
    drags in the broker, the database or the CLI; the check does not load lxml, nor the
    reader requests (a page body is handed over, never fetched by it)."""
    check = f"import sys, runner.check.checker, runner.check.fetch; sys.exit({forbidden!r} in sys.modules)"
    links = ("import sys, runner.discover.html, runner.discover.markdown, runner.discover.sitemap; "
             f"sys.exit({forbidden!r} in sys.modules)")
    if forbidden != "requests":
        assert subprocess.run([sys.executable, "-c", check], cwd=ROOT).returncode == 0, \
            f"import runner.check pulls in {forbidden}"
    if forbidden != "lxml":
        assert subprocess.run([sys.executable, "-c", links], cwd=ROOT).returncode == 0, \
            f"import runner.discover pulls in {forbidden}"
