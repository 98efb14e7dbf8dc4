"""Worker heartbeats (the ``workers`` table), for the store: who is alive, where, how busy."""

from __future__ import annotations

from datetime import datetime, timedelta

from .dialects import Dialect
from .models import WorkerBeat, utcnow


class Workers:
    """The store's heartbeat methods (:class:`db.Store` is made of one such part per table)."""

    dialect: Dialect

    def heartbeat(self, beat: WorkerBeat) -> None:
        d = self.dialect
        with d.transaction() as cur:
            cur.execute(
                "INSERT INTO workers (id, host, pid, queue, concurrency, processed, started_at, last_seen, region, "
                "concurrency_max) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
                "processed = excluded.processed, last_seen = excluded.last_seen, concurrency = excluded.concurrency, "
                "concurrency_max = excluded.concurrency_max",
                (beat.id, beat.host, beat.pid, beat.queue, beat.concurrency, beat.processed,
                 d.ts(beat.started_at), d.ts(beat.last_seen), beat.region, beat.concurrency_max),
            )
            # Rows of workers gone for a day are removed here, by a writer, so that reading
            # the list (status, the TUI) never needs SQLite's write lock.
            cur.execute("DELETE FROM workers WHERE last_seen < %s",
                        (d.ts(beat.last_seen - timedelta(days=1, seconds=30)),))

    def forget_worker(self, worker_id: str) -> None:
        with self.dialect.transaction() as cur:
            cur.execute("DELETE FROM workers WHERE id = %s", (worker_id,))

    def workers(self, *, alive_within: timedelta = timedelta(seconds=30),
                now: datetime | None = None) -> list[WorkerBeat]:
        """Workers whose last heartbeat is recent (heartbeats remove day-old rows)."""
        d = self.dialect
        cutoff = (now or utcnow()) - alive_within
        with d.transaction(write=False) as cur:
            cur.execute(
                "SELECT id, host, pid, queue, concurrency, processed, started_at, last_seen, region, concurrency_max "
                "FROM workers "
                "WHERE last_seen >= %s ORDER BY host, pid",
                (d.ts(cutoff),),
            )
            rows = cur.fetchall()
        return [
            WorkerBeat(r[0], r[1], r[2], r[3], r[4], r[5], d.parse_ts(r[6]), d.parse_ts(r[7]), region=r[8],
                       concurrency_max=r[9]) for r in rows
        ]
