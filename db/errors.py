"""Errors raised by the store. ``db`` imports nothing of ours, so its errors live here.

    StoreError            base of every store error
    ├── StoreUnavailable  the database cannot be reached now (retry later; nothing was written);
    │                     ``refused`` when the server answered but refused the URL's user,
    │                     password or database: retrying helps only once someone fixes that
    └── StoreConfigError  the database URL is unusable (says why, never the password)
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached or dropped the connection mid-transaction.

    The transaction was rolled back: the caller may retry the whole operation.

    ``refused``: the server is up but refused the connection's settings (no such role or
    database, a wrong password, pg_hba). A running worker still retries (an operator may be
    fixing it, and its jobs are safe in the meantime); a command, or a worker starting,
    stops at once with the message instead of waiting.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class StoreConfigError(StoreError):
    """The database URL cannot be used."""
