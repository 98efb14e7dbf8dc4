"""The schema's version and its migrations (the ``schema_version`` table), for the store.

Reads go without SQLite's write lock (another process may hold it), and ask whether the
table exists instead of creating it, so that workers starting at once race on nothing
until they migrate, which one of them does under the dialect's lock.
"""

from __future__ import annotations

from typing import Any

from .dialects import Dialect


class Schema:
    """The store's schema methods (:class:`db.Store` is made of one such part per table)."""

    dialect: Dialect

    def schema_version(self) -> int:
        versions = self._applied()
        if versions is not None:
            return max(versions, default=0)
        with self.dialect.transaction() as cur:
            return self._schema_version(cur)

    def _applied(self) -> set[int] | None:
        """The versions applied (None: no schema yet), read without a write lock."""
        d = self.dialect
        with d.transaction(write=False) as cur:
            if not d.has_table(cur, "schema_version"):
                return None
            cur.execute("SELECT version FROM schema_version")
            return {int(row[0]) for row in cur.fetchall()}

    def _schema_version(self, cur: Any) -> int:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cur.execute("SELECT max(version) FROM schema_version")
        row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def latest_version(self) -> int:
        return max(version for version, _ in self.dialect.migrations)

    def pending_versions(self) -> list[int]:
        """Migrations not applied yet (versions may land out of order, so not only those
        above the highest applied)."""
        done = self._applied() or set()
        return sorted(v for v, _ in self.dialect.migrations if v not in done)

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied. Safe to run concurrently."""
        applied: list[int] = []
        if not self.pending_versions():
            return applied  # up to date: no write lock (another process may hold it)
        with self.dialect.transaction() as cur:
            self.dialect.lock_schema(cur)  # several workers may start at once: one migrates, the others wait here
            self._schema_version(cur)
            cur.execute("SELECT version FROM schema_version")
            done = {int(row[0]) for row in cur.fetchall()}
            # Every version not applied yet, not only those above the highest: versions are
            # numbered by issue and may land out of order (4 before 2 and 3).
            for version, statements in sorted(self.dialect.migrations):
                if version in done:
                    continue
                for statement in statements:
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                applied.append(version)
        return applied
