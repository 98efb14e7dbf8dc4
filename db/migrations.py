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
        2,
        [
            # API tokens (runner token create): only the sha256 of a token is kept.
            """CREATE TABLE tokens (
                id bigserial PRIMARY KEY,
                name text NOT NULL,
                digest text NOT NULL UNIQUE,
                read_only boolean NOT NULL DEFAULT false,
                created_at timestamptz NOT NULL,
                revoked_at timestamptz
            )""",
            "CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL",
            # The order results were stored in, for the API's event stream (Last-Event-ID).
            "ALTER TABLE results ADD COLUMN seq bigserial",
            "CREATE UNIQUE INDEX results_seq ON results (seq)",
        ],
    ),
    (
        4,
        [
            # Regions (issue 16): a job that names regions gets one result per (job, region)
            # here; ``results`` keeps one row per job, the result that decided its outcome
            # by quorum (every reader still joins it), and stays the only row of a job that
            # named no region.
            """CREATE TABLE region_results (
                job_id bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
                region text NOT NULL,
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
                detail jsonb NOT NULL DEFAULT '{}',
                PRIMARY KEY (job_id, region)
            )""",
            # Today's results move to the default region: a constant default, so PostgreSQL
            # and SQLite record it in the catalogue instead of rewriting a million rows.
            "ALTER TABLE results ADD COLUMN region text NOT NULL DEFAULT 'default'",
            # When a job's regions without a live worker are reported no_worker; cleared once
            # every region reported, so the sweep's index holds only jobs still waiting.
            "ALTER TABLE jobs ADD COLUMN no_worker_at timestamptz",
            "CREATE INDEX jobs_no_worker ON jobs (no_worker_at) WHERE no_worker_at IS NOT NULL",
            "ALTER TABLE workers ADD COLUMN region text NOT NULL DEFAULT 'default'",
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
        2,
        [
            """CREATE TABLE tokens (
                id integer PRIMARY KEY AUTOINCREMENT,
                name text NOT NULL,
                digest text NOT NULL UNIQUE,
                read_only integer NOT NULL DEFAULT 0,
                created_at text NOT NULL,
                revoked_at text
            )""",
            "CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL",
            # SQLite has one writer at a time, so numbering at insert is numbering at commit.
            "ALTER TABLE results ADD COLUMN seq integer",
            "UPDATE results SET seq = job_id",
            "CREATE UNIQUE INDEX results_seq ON results (seq)",
            """CREATE TRIGGER results_number AFTER INSERT ON results WHEN NEW.seq IS NULL BEGIN
                UPDATE results SET seq = (SELECT COALESCE(max(seq), 0) + 1 FROM results)
                WHERE job_id = NEW.job_id;
            END""",
        ],
    ),
    (
        4,
        [
            # Regions (issue 16): a job that names regions gets one result per (job, region)
            # here; ``results`` keeps one row per job, the result that decided its outcome
            # by quorum (every reader still joins it), and stays the only row of a job that
            # named no region.
            """CREATE TABLE region_results (
                job_id integer NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
                region text NOT NULL,
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
                detail text NOT NULL DEFAULT '{}',
                PRIMARY KEY (job_id, region)
            )""",
            # Today's results move to the default region: a constant default, so PostgreSQL
            # and SQLite record it in the catalogue instead of rewriting a million rows.
            "ALTER TABLE results ADD COLUMN region text NOT NULL DEFAULT 'default'",
            # When a job's regions without a live worker are reported no_worker; cleared once
            # every region reported, so the sweep's index holds only jobs still waiting.
            "ALTER TABLE jobs ADD COLUMN no_worker_at text",
            "CREATE INDEX jobs_no_worker ON jobs (no_worker_at) WHERE no_worker_at IS NOT NULL",
            "ALTER TABLE workers ADD COLUMN region text NOT NULL DEFAULT 'default'",
        ],
    ),
]
