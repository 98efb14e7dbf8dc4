"""``runner import`` and ``runner prune``: batch imports for cron, and retention."""

from __future__ import annotations

from .cli import app  # noqa: F401 - commands are registered on it here (issue 5)
