"""A job's state as every read sees it: the row's ``state``, except that a job still
``queued`` in a batch taken back (``runner cancel --batch``) is ``cancelled``.

Taking back a batch marks it once (``batches.cancelled_at``) instead of writing a new
version of each of its queued rows and an entry in each of the job table's four indexes
(47 to 58 s for a million rows on the 2-core VM, see docs/performance.md). From the
mark's commit on, every listing, count and filter reads those jobs as cancelled through
the SQL below, the workers drop their messages (:meth:`db.results.Results.skip_ids`), a
running mark or a result never lands on one, and the workers turn the rows themselves to
``cancelled`` as they drop the messages (:meth:`db.jobs.Jobs.settle_cancelled`), a few
hundred at a time, so the cancelled rows soon cost the reads nothing more.

Every fragment is for a job row under the alias given (``j`` unless said), and needs no
join: the cancelled batches are one uncorrelated subquery over the partial index
``batches_cancelled`` (a handful of rows, hashed once per statement).
"""

from __future__ import annotations

from .models import STATES

CANCELLED_BATCHES = "SELECT id FROM batches WHERE cancelled_at IS NOT NULL"


def taken_back(j: str = "j") -> str:
    """True for a job row still ``queued`` in a batch taken back: cancelled, whatever the
    row says. Never NULL (a job without a batch is simply not taken back)."""
    return f"({j}.state = 'queued' AND {j}.batch_id IS NOT NULL AND {j}.batch_id IN ({CANCELLED_BATCHES}))"


def job_state(j: str = "j") -> str:
    """The job's state as users see it, for a SELECT list or a GROUP BY."""
    return f"(CASE WHEN {taken_back(j)} THEN 'cancelled' ELSE {j}.state END)"


def state_is(state: str, j: str = "j") -> str:
    """A filter on the state as users see it, still served by the ``(state, id)`` index."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; one of {', '.join(STATES)}")
    if state == "cancelled":
        return f"({j}.state = 'cancelled' OR {taken_back(j)})"
    if state == "queued":
        return f"({j}.state = 'queued' AND NOT {taken_back(j)})"
    return f"{j}.state = '{state}'"
