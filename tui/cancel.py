"""Taking back queued jobs from the TUI (key ``C``): what can be cancelled from where the
cursor is, offered in a modal (:class:`~tui.choice.ChoiceScreen`) that is the confirmation.

The choices, each with its count: the row's job, if still queued; the queued jobs of the
batch the view is filtered to (``b``), else of the row's batch. Nothing happens until one
is picked; Esc or "keep them" cancels nothing.
"""

from __future__ import annotations

from typing import Any

from db import JobView
from runner.text import printable

KEEP = "keep"


def choices(runtime: Any, job: JobView | None, batch_filter: str | None) -> list[tuple[str, str]]:
    """(key, label) for each non-empty choice, then "keep them"; only "keep them": nothing to cancel.
    Blocking (counts in the database): call it from a thread worker."""
    out: list[tuple[str, str]] = []
    if job is not None and job.state == "queued":
        out.append((f"job:{job.id}", f"cancel job #{job.id} (queued)"))
    batch: str | int | None = batch_filter if batch_filter else (job.batch_id if job is not None else None)
    if batch is not None:
        n = runtime.cancel(batch=batch, count_only=True)
        if n:
            name = (job.batch if job is not None and job.batch_id is not None and str(job.batch_id) == str(batch)
                    else None)
            shown = f"batch {printable(name, 60)!r}" if name else f"batch {batch}"
            out.append((f"batch:{batch}", f"cancel {n:,} queued job{'s' if n != 1 else ''} of {shown}"))
    out.append((KEEP, "keep them (cancel nothing)"))
    return out


def apply(runtime: Any, key: str) -> int:
    """Cancel what ``key`` (from :func:`choices`) names; how many jobs were cancelled."""
    kind, _, value = key.partition(":")
    if kind == "job":
        cancelled: int = runtime.cancel(job_ids=[int(value)])
        return cancelled
    if kind == "batch":
        cancelled = runtime.cancel(batch=int(value) if value.isdigit() else value)
        return cancelled
    return 0
