"""Versioned schema migrations, one list per dialect, applied in order.

Each entry is (version, statements). A migration never edits an earlier one: add a new
version, to both lists (SQLite's may be empty where PostgreSQL alone needs the change).
``schema_version`` holds the highest applied version.
"""

from __future__ import annotations

from .postgres import POSTGRES
from .sqlite import SQLITE

__all__ = ["POSTGRES", "SQLITE"]
