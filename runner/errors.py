"""The exceptions urltester raises, one tree (in the manner of httpx).

    UrltesterError                 anything urltester itself reports
    ├── ConfigError                a bad database/broker URL or setting (message is one line)
    ├── InvalidInput               something a user typed or imported is not acceptable
    │   ├── InvalidURL             a URL that cannot be checked (scheme, host, length ...)
    │   └── OptionError            a per-job option or condition that cannot be used
    └── BrokerError                RabbitMQ could not be reached or refused a publish
        └── UnsentJobs             ... while submitting: the jobs are recorded, some not sent

The store's own tree (``db.StoreError``: ``StoreUnavailable``, ``StoreConfigError``) comes
from ``db``, which imports nothing of ours; the CLI and the TUI handle both trees.

Low-level exceptions (kombu, amqp, socket, psycopg2) are mapped to these at the
boundary with ``raise ... from exc`` so the CLI and the TUI turn a known error into a
clear message and never show a traceback. Messages never contain passwords.
"""

from __future__ import annotations


class UrltesterError(Exception):
    """Base class of every error urltester reports to a user."""


class ConfigError(UrltesterError):
    """A setting (database URL, broker URL, option value) is unusable."""


class InvalidInput(UrltesterError):
    """Input from a user or an import file is not acceptable.

    ``where`` names the place (``FILE:LINE`` or the option name) when known.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InvalidURL(InvalidInput):
    """A URL that cannot be checked."""


class OptionError(InvalidInput):
    """A per-job option or condition that cannot be used."""


class BrokerError(UrltesterError):
    """The message broker could not be reached or did not confirm a publish."""


class UnsentJobs(BrokerError):
    """A submit's publish failed; all ``recorded`` jobs are in the database, those whose
    message was not confirmed are marked unsent (``runner requeue --stale`` sends them)."""

    def __init__(self, message: str, recorded: int) -> None:
        super().__init__(message)
        self.recorded = recorded
