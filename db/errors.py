"""Errors raised by the store. ``db`` imports nothing of ours, so its errors live here.

    StoreError            base of every store error
    ├── StoreUnavailable  the database cannot be reached now (retry later; nothing was written)
    └── StoreConfigError  the database URL is unusable (says why, never the password)
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached or dropped the connection mid-transaction.

    The transaction was rolled back: the caller may retry the whole operation.
    """


class StoreConfigError(StoreError):
    """The database URL cannot be used."""
