"""Versioned schema migrations, one list per dialect, applied in order.

Each entry is (version, statements). A migration never edits an earlier one: add a new
version. ``schema_version`` holds the highest applied version.
"""

from __future__ import annotations

POSTGRES: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE batches (
                id bigserial PRIMARY KEY,
                name text NOT NULL,
                idempotency_key text UNIQUE,
                created_at timestamptz NOT NULL,
                size integer NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX batches_name ON batches (name)",
            """CREATE TABLE jobs (
                id bigserial PRIMARY KEY,
                batch_id bigint REFERENCES batches (id) ON DELETE CASCADE,
                url text NOT NULL,
                options jsonb NOT NULL DEFAULT '{}',
                state text NOT NULL DEFAULT 'queued',
                submitted_at timestamptz NOT NULL,
                published_at timestamptz,
                publish_error text,
                started_at timestamptz
            )""",
            "CREATE INDEX jobs_batch ON jobs (batch_id, id)",
            "CREATE INDEX jobs_state ON jobs (state, id)",
            "CREATE INDEX jobs_submitted ON jobs (submitted_at)",
            """CREATE TABLE results (
                job_id bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
                outcome text NOT NULL,
                ok boolean NOT NULL,
                status_code integer,
                total_ms double precision,
                attempts integer NOT NULL,
                error text,
                final_url text,
                bytes bigint,
                content_type text,
                title text,
                checked_at timestamptz NOT NULL,
                worker text,
                detail jsonb NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX results_outcome ON results (outcome, job_id)",
            "CREATE INDEX results_latency ON results ((COALESCE(total_ms, 0)), job_id)",
            "CREATE INDEX results_status ON results ((COALESCE(status_code, 0)), job_id)",
            "CREATE INDEX results_checked ON results (checked_at, job_id)",
            """CREATE TABLE workers (
                id text PRIMARY KEY,
                host text NOT NULL,
                pid integer NOT NULL,
                queue text NOT NULL,
                concurrency integer NOT NULL,
                processed bigint NOT NULL DEFAULT 0,
                started_at timestamptz NOT NULL,
                last_seen timestamptz NOT NULL
            )""",
        ],
    ),
    (
        3,
        [
            # Issue 15: the adaptive limit's ceiling beside its current value (concurrency).
            "ALTER TABLE workers ADD COLUMN concurrency_max integer",
            # Per-host limits set with `runner limits set`: a host name or *.domain pattern.
            """CREATE TABLE host_limits (
                pattern text PRIMARY KEY,
                rate double precision,
                connections integer,
                updated_at timestamptz NOT NULL
            )""",
            # Pacing state per host: the next free rate slot (GCRA's theoretical arrival
            # time) and a Retry-After pause, both in epoch seconds of the database's clock.
            """CREATE TABLE host_pace (
                host text PRIMARY KEY,
                next_slot double precision NOT NULL DEFAULT 0,
                paused_until double precision NOT NULL DEFAULT 0
            )""",
            # A check in flight on a host with a connection limit; renewed by its worker's
            # heartbeat, so a worker killed mid-check frees it when it expires.
            """CREATE TABLE host_leases (
                id text PRIMARY KEY,
                host text NOT NULL,
                worker text NOT NULL,
                expires_at double precision NOT NULL
            )""",
            # When each check of a rate-limited host was let go (its last second or so): the
            # hard cap on any 1 s window, behind GCRA's spacing.
            """CREATE TABLE host_grants (
                host text NOT NULL,
                at double precision NOT NULL
            )""",
            "CREATE INDEX host_grants_host ON host_grants (host, at)",
            "CREATE INDEX host_leases_host ON host_leases (host, expires_at)",
            "CREATE INDEX host_leases_worker ON host_leases (worker)",
        ],
    ),
]

SQLITE: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE batches (
                id integer PRIMARY KEY AUTOINCREMENT,
                name text NOT NULL,
                idempotency_key text UNIQUE,
                created_at text NOT NULL,
                size integer NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX batches_name ON batches (name)",
            """CREATE TABLE jobs (
                id integer PRIMARY KEY AUTOINCREMENT,
                batch_id integer REFERENCES batches (id) ON DELETE CASCADE,
                url text NOT NULL,
                options text NOT NULL DEFAULT '{}',
                state text NOT NULL DEFAULT 'queued',
                submitted_at text NOT NULL,
                published_at text,
                publish_error text,
                started_at text
            )""",
            "CREATE INDEX jobs_batch ON jobs (batch_id, id)",
            "CREATE INDEX jobs_state ON jobs (state, id)",
            "CREATE INDEX jobs_submitted ON jobs (submitted_at)",
            """CREATE TABLE results (
                job_id integer PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
                outcome text NOT NULL,
                ok integer NOT NULL,
                status_code integer,
                total_ms real,
                attempts integer NOT NULL,
                error text,
                final_url text,
                bytes integer,
                content_type text,
                title text,
                checked_at text NOT NULL,
                worker text,
                detail text NOT NULL DEFAULT '{}'
            )""",
            "CREATE INDEX results_outcome ON results (outcome, job_id)",
            "CREATE INDEX results_latency ON results ((COALESCE(total_ms, 0)), job_id)",
            "CREATE INDEX results_status ON results ((COALESCE(status_code, 0)), job_id)",
            "CREATE INDEX results_checked ON results (checked_at, job_id)",
            """CREATE TABLE workers (
                id text PRIMARY KEY,
                host text NOT NULL,
                pid integer NOT NULL,
                queue text NOT NULL,
                concurrency integer NOT NULL,
                processed integer NOT NULL DEFAULT 0,
                started_at text NOT NULL,
                last_seen text NOT NULL
            )""",
        ],
    ),
    (
        3,
        [
            # Issue 15: the adaptive limit's ceiling beside its current value (concurrency).
            "ALTER TABLE workers ADD COLUMN concurrency_max integer",
            # Per-host limits set with `runner limits set`: a host name or *.domain pattern.
            """CREATE TABLE host_limits (
                pattern text PRIMARY KEY,
                rate real,
                connections integer,
                updated_at text NOT NULL
            )""",
            # Pacing state per host: the next free rate slot (GCRA's theoretical arrival
            # time) and a Retry-After pause, both in epoch seconds of the database's clock.
            """CREATE TABLE host_pace (
                host text PRIMARY KEY,
                next_slot real NOT NULL DEFAULT 0,
                paused_until real NOT NULL DEFAULT 0
            )""",
            # A check in flight on a host with a connection limit; renewed by its worker's
            # heartbeat, so a worker killed mid-check frees it when it expires.
            """CREATE TABLE host_leases (
                id text PRIMARY KEY,
                host text NOT NULL,
                worker text NOT NULL,
                expires_at real NOT NULL
            )""",
            # When each check of a rate-limited host was let go (its last second or so): the
            # hard cap on any 1 s window, behind GCRA's spacing.
            """CREATE TABLE host_grants (
                host text NOT NULL,
                at real NOT NULL
            )""",
            "CREATE INDEX host_grants_host ON host_grants (host, at)",
            "CREATE INDEX host_leases_host ON host_leases (host, expires_at)",
            "CREATE INDEX host_leases_worker ON host_leases (worker)",
        ],
    ),
]
