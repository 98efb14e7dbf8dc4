"""The operator's terminal UI (Textual): type URLs, watch a refreshing grid of results.

Owns: the app, its widgets (one per file), styles (``app.tcss``) and screens. It is handed
a :class:`~runner.jobs.runtime.Runtime` and never builds connections itself; blocking I/O
runs in thread workers and comes back as messages. May import: ``runner.jobs``, ``db`` and
the shared leaves; the only importer of textual. See :mod:`tui.app` and docs/tui.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UrlTesterApp"]


def __getattr__(name: str) -> Any:
    # Lazy: ``runner`` imports this package only when the TUI actually runs.
    if name == "UrlTesterApp":
        from .app import UrlTesterApp

        return UrlTesterApp
    raise AttributeError(name)
