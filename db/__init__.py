"""urltester's store: jobs, results, batches and worker heartbeats in PostgreSQL or SQLite.

Imports nothing of ``runner`` or ``tui`` but the leaf ``runner.fields`` (a result's fields,
declared once). See :mod:`db.store` for the API.
"""

from .errors import StoreConfigError, StoreError, StoreUnavailable
from .limits import LEASE_TTL, Admission, HostLimit, LimitStore
from .models import (
    CHANGES,
    ORDERS,
    STATES,
    URL_STATES,
    Batch,
    Change,
    Counts,
    JobFilter,
    JobView,
    NewJob,
    ResultRecord,
    Slow,
    WorkerBeat,
)
from .regions import DEFAULT_REGION, NO_WORKER
from .store import Store, open_store, utcnow

__all__ = [
    "LEASE_TTL", "Admission", "HostLimit", "LimitStore",
    "CHANGES", "ORDERS", "STATES", "URL_STATES", "Batch", "Change", "Counts", "Slow", "JobFilter", "JobView", "NewJob",
    "ResultRecord", "DEFAULT_REGION", "NO_WORKER",
    "Store", "StoreConfigError", "StoreError", "StoreUnavailable", "WorkerBeat",
    "open_store", "utcnow",
]
