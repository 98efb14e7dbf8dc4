"""The operator's terminal UI (Textual). See :mod:`tui.app` and docs/tui.md."""

from __future__ import annotations

from typing import Any

__all__ = ["UrlTesterApp"]


def __getattr__(name: str) -> Any:
    # Lazy: ``runner`` imports this package only when the TUI actually runs.
    if name == "UrlTesterApp":
        from .app import UrlTesterApp

        return UrlTesterApp
    raise AttributeError(name)
