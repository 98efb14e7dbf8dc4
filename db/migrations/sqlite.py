"""SQLite's schema migrations (db/migrations: the rules).
"""

from __future__ import annotations

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
    (
        5,
        [
            # Crawls (issue 26): a batch that grows. The crawl's settings, and how many URLs
            # it has taken (the --max-urls bound is kept under this row's lock).
            """CREATE TABLE crawls (
                batch_id integer PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
                roots text NOT NULL,
                scope text NOT NULL,
                depth integer NOT NULL,
                max_urls integer NOT NULL,
                robots integer NOT NULL,
                options text NOT NULL,
                urls integer NOT NULL DEFAULT 0,
                robots_skipped integer NOT NULL DEFAULT 0,
                created_at text NOT NULL
            )""",
            # Each URL once per crawl: the primary key decides which worker enqueues it.
            """CREATE TABLE crawl_urls (
                batch_id integer NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
                url text NOT NULL,
                depth integer NOT NULL,
                PRIMARY KEY (batch_id, url)
            )""",
            # The pages that link to a URL of a crawl (up to 20 kept), with the link's text.
            """CREATE TABLE crawl_referrers (
                batch_id integer NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
                url text NOT NULL,
                referrer text NOT NULL,
                text text NOT NULL DEFAULT '',
                PRIMARY KEY (batch_id, url, referrer)
            )""",
        ],
    ),
    (
        6,
        [
            # Issue 21: see the PostgreSQL list.
            """CREATE TABLE urls (
                id integer PRIMARY KEY AUTOINCREMENT,
                url text NOT NULL UNIQUE,
                state text NOT NULL DEFAULT 'pending',
                since text,
                slow_ms real,
                fail_after integer NOT NULL DEFAULT 1,
                recover_after integer NOT NULL DEFAULT 1,
                fails integer NOT NULL DEFAULT 0,
                passes integer NOT NULL DEFAULT 0,
                last_job_id integer,
                last_checked_at text,
                last_outcome text,
                last_status_code integer,
                last_total_ms real,
                last_error text,
                created_at text NOT NULL
            )""",
            "CREATE INDEX urls_state ON urls (state, since, id)",
            "CREATE INDEX urls_latency ON urls ((COALESCE(last_total_ms, -1)), id)",
            "CREATE INDEX urls_since ON urls (since, id)",
            "ALTER TABLE jobs ADD COLUMN url_id integer",
            "CREATE INDEX jobs_url ON jobs (url_id, id) WHERE url_id IS NOT NULL",
            """CREATE TABLE url_changes (
                id integer PRIMARY KEY AUTOINCREMENT,
                url_id integer NOT NULL REFERENCES urls (id) ON DELETE CASCADE,
                at text NOT NULL,
                from_state text,
                to_state text NOT NULL,
                change text NOT NULL,
                job_id integer NOT NULL,
                batch_id integer,
                outcome text NOT NULL,
                status_code integer,
                error text,
                region text
            )""",
            "CREATE INDEX url_changes_url ON url_changes (url_id, at)",
            "CREATE INDEX url_changes_at ON url_changes (at)",
            # A URL's checks summed per hour (grain 'h') and per day ('d'), per region (''
            # for the job's own outcome, its quorum's when it named regions): what uptime
            # and percentiles are read from, so they outlive pruned results. by_outcome and
            # hist are JSON objects (outcome -> count; log bucket -> count, db/rollups.py).
            """CREATE TABLE url_rollups (
                url_id integer NOT NULL REFERENCES urls (id) ON DELETE CASCADE,
                grain text NOT NULL,
                start text NOT NULL,
                region text NOT NULL,
                checks integer NOT NULL,
                ok integer NOT NULL,
                by_outcome text NOT NULL,
                hist text NOT NULL,
                PRIMARY KEY (url_id, grain, start, region)
            )""",
            "CREATE INDEX url_rollups_start ON url_rollups (grain, start)",
        ],
    ),
    (
        7,
        [
            # Alerts (issue 22): who hears of which changes, through which Apprise URL.
            """CREATE TABLE alerts (
                id integer PRIMARY KEY AUTOINCREMENT,
                name text NOT NULL UNIQUE,
                target text NOT NULL,
                kinds text NOT NULL,
                batch text,
                contains text,
                has_urls integer NOT NULL DEFAULT 0,
                reminder_s real,
                min_regions integer,
                created_at text NOT NULL,
                last_sent_at text,
                last_error text,
                last_error_at text
            )""",
            # --state-of URLS-FILE: the URLs an alert watches, looked up one change at a time.
            """CREATE TABLE alert_urls (
                alert_id integer NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
                url text NOT NULL,
                PRIMARY KEY (alert_id, url)
            )""",
            # The outbox: one row per change to tell, written in the transaction that records
            # the change; senders claim due rows (state sending, next_attempt_at = the lease's
            # end, so a killed sender's rows fall due again). grp: b:<batch id> or w:<minute>.
            # No foreign key to alerts, on purpose: a writer whose cached alert was removed a
            # moment ago must not fail its result's transaction; removal deletes the rows.
            """CREATE TABLE alert_outbox (
                id integer PRIMARY KEY AUTOINCREMENT,
                alert_id integer NOT NULL,
                grp text NOT NULL,
                url text NOT NULL,
                change text NOT NULL,
                job_id integer,
                region text,
                payload text NOT NULL,
                state text NOT NULL DEFAULT 'pending',
                created_at text NOT NULL,
                next_attempt_at text NOT NULL,
                attempts integer NOT NULL DEFAULT 0,
                claimed_by text,
                sent_at text,
                error text
            )""",
            "CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE state IN ('pending', 'sending')",
            "CREATE INDEX alert_outbox_group ON alert_outbox (alert_id, grp)",
            "CREATE INDEX alert_outbox_url ON alert_outbox (alert_id, url, created_at)",
        ],
    ),
    (
        8,
        [
            "ALTER TABLE batches ADD COLUMN cancelled_at text",
            "CREATE INDEX batches_cancelled ON batches (id) WHERE cancelled_at IS NOT NULL",
        ],
    ),
    (9, []),  # issue 25: PostgreSQL's admission function only (SQLite decides in Python)
]
