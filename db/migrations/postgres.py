"""PostgreSQL's schema migrations (db/migrations: the rules).
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
            # One round trip per admission through a WAN: the decision of LimitStore.admit
            # (db/limits.py has it in Python for SQLite), run in autocommit so the host's
            # row is locked only while the function runs, not for a client round trip.
            """CREATE FUNCTION urltester_admit(p_host text, p_rate double precision, p_conns integer,
                    p_worker text, p_slot double precision, p_early double precision, p_lease text,
                    p_ttl double precision)
                RETURNS TABLE (granted boolean, wait double precision, slot double precision,
                               lease text, now double precision)
                LANGUAGE plpgsql AS $$
            DECLARE
                v_now double precision := extract(epoch from clock_timestamp());
                v_next double precision;
                v_paused double precision;
                v_slot double precision := p_slot;
                v_window double precision;
                v_at double precision;
                v_count integer;
            BEGIN
                INSERT INTO host_pace (host) VALUES (p_host) ON CONFLICT (host) DO NOTHING;
                SELECT h.next_slot, h.paused_until INTO v_next, v_paused FROM host_pace h
                    WHERE h.host = p_host FOR UPDATE;
                IF v_slot IS NOT NULL AND (v_slot < v_paused OR v_slot < v_now - 2.0 OR v_slot > v_now + 3600) THEN
                    v_slot := NULL;
                END IF;
                IF v_slot IS NOT NULL AND v_slot - v_now > p_early THEN
                    RETURN QUERY SELECT false, v_slot - v_now, v_slot, NULL::text, v_now;
                    RETURN;
                END IF;
                IF v_slot IS NULL AND p_rate > 0 THEN
                    v_slot := greatest(v_next, v_now, v_paused);
                    v_next := v_slot + 1.0 / p_rate;
                    UPDATE host_pace SET next_slot = v_next WHERE host = p_host;
                    IF v_slot - v_now > p_early THEN
                        RETURN QUERY SELECT false, v_slot - v_now, v_slot, NULL::text, v_now;
                        RETURN;
                    END IF;
                ELSIF v_slot IS NULL AND v_paused > v_now THEN
                    RETURN QUERY SELECT false, v_paused - v_now, NULL::double precision, NULL::text, v_now;
                    RETURN;
                END IF;
                IF p_rate > 0 THEN
                    v_window := greatest(1.0, 1.0 / p_rate) + 0.25;  -- JITTER in db/limits.py
                    DELETE FROM host_grants WHERE host = p_host AND at <= v_now - v_window;
                    SELECT g.at INTO v_at FROM host_grants g WHERE g.host = p_host ORDER BY g.at DESC
                        LIMIT 1 OFFSET greatest(1, floor(p_rate * (v_window - 0.25) + 1e-9)::integer) - 1;
                    IF FOUND THEN
                        RETURN QUERY SELECT false, v_at + v_window - v_now + 0.001, v_slot, NULL::text, v_now;
                        RETURN;
                    END IF;
                END IF;
                IF p_conns > 0 THEN
                    DELETE FROM host_leases WHERE host = p_host AND expires_at < v_now;
                    SELECT count(*) INTO v_count FROM host_leases WHERE host = p_host;
                    IF v_count >= p_conns THEN
                        IF p_rate > 0 THEN
                            v_slot := greatest(v_next, v_now, v_paused);
                            UPDATE host_pace SET next_slot = v_slot + 1.0 / p_rate WHERE host = p_host;
                            RETURN QUERY SELECT false, greatest(v_slot - v_now, 0.02), v_slot, NULL::text, v_now;
                        ELSE
                            RETURN QUERY SELECT false, 0.1::double precision, NULL::double precision, NULL::text, v_now;
                        END IF;
                        RETURN;
                    END IF;
                    INSERT INTO host_leases (id, host, worker, expires_at) VALUES (p_lease, p_host, p_worker, v_now + p_ttl);
                END IF;
                IF p_rate > 0 THEN
                    INSERT INTO host_grants (host, at) VALUES (p_host, v_now);
                END IF;
                RETURN QUERY SELECT true, 0.0::double precision, NULL::double precision,
                    CASE WHEN p_conns > 0 THEN p_lease END, v_now;
            END
            $$""",
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
    (
        5,
        [
            # Crawls (issue 26): a batch that grows. The crawl's settings, and how many URLs
            # it has taken (the --max-urls bound is kept under this row's lock).
            """CREATE TABLE crawls (
                batch_id bigint PRIMARY KEY REFERENCES batches (id) ON DELETE CASCADE,
                roots text NOT NULL,
                scope text NOT NULL,
                depth integer NOT NULL,
                max_urls integer NOT NULL,
                robots boolean NOT NULL,
                options text NOT NULL,
                urls integer NOT NULL DEFAULT 0,
                robots_skipped integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL
            )""",
            # Each URL once per crawl: the primary key decides which worker enqueues it.
            """CREATE TABLE crawl_urls (
                batch_id bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
                url text NOT NULL,
                depth integer NOT NULL,
                PRIMARY KEY (batch_id, url)
            )""",
            # The pages that link to a URL of a crawl (up to 20 kept), with the link's text.
            """CREATE TABLE crawl_referrers (
                batch_id bigint NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
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
            # Issue 21: a URL is more than a job. One row per normalised URL (its identity,
            # credentials included) with its state, since when, and the options that define
            # the state; jobs refer to it by id. The consecutive counters (fails, passes)
            # move with each recorded result, under this row's lock (db/history.py).
            """CREATE TABLE urls (
                id bigserial PRIMARY KEY,
                url text NOT NULL UNIQUE,
                state text NOT NULL DEFAULT 'pending',
                since timestamptz,
                slow_ms double precision,
                fail_after integer NOT NULL DEFAULT 1,
                recover_after integer NOT NULL DEFAULT 1,
                fails integer NOT NULL DEFAULT 0,
                passes integer NOT NULL DEFAULT 0,
                last_job_id bigint,
                last_checked_at timestamptz,
                last_outcome text,
                last_status_code integer,
                last_total_ms double precision,
                last_error text,
                created_at timestamptz NOT NULL
            )""",
            "CREATE INDEX urls_state ON urls (state, since, id)",
            "CREATE INDEX urls_latency ON urls ((COALESCE(last_total_ms, -1)), id)",
            "CREATE INDEX urls_since ON urls (since, id)",
            # No foreign key: a job's url_id is set from the row just upserted in the same
            # transaction, and a key check per row would slow a million-line import.
            "ALTER TABLE jobs ADD COLUMN url_id bigint",
            "CREATE INDEX jobs_url ON jobs (url_id, id) WHERE url_id IS NOT NULL",
            # Every change of a URL's state, with the result that caused it; kept as long as
            # the URL (job_id and batch_id may name pruned jobs and batches).
            """CREATE TABLE url_changes (
                id bigserial PRIMARY KEY,
                url_id bigint NOT NULL REFERENCES urls (id) ON DELETE CASCADE,
                at timestamptz NOT NULL,
                from_state text,
                to_state text NOT NULL,
                change text NOT NULL,
                job_id bigint NOT NULL,
                batch_id bigint,
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
                url_id bigint NOT NULL REFERENCES urls (id) ON DELETE CASCADE,
                grain text NOT NULL,
                start timestamptz NOT NULL,
                region text NOT NULL,
                checks integer NOT NULL,
                ok integer NOT NULL,
                by_outcome text NOT NULL,
                hist text NOT NULL,
                PRIMARY KEY (url_id, grain, start, region)
            )""",
            "CREATE INDEX url_rollups_start ON url_rollups (grain, start)",
            # Two JSON objects of counts added key by key: a rollup's by_outcome or hist
            # merged with a result's, inside ON CONFLICT DO UPDATE (no read-modify-write).
            """CREATE FUNCTION urltester_counts_add(a text, b text) RETURNS text
                LANGUAGE sql IMMUTABLE AS $$
                SELECT COALESCE((SELECT json_object_agg(key, total)::text FROM (
                    SELECT key, sum(value::bigint) AS total FROM (
                        SELECT * FROM json_each_text(a::json) UNION ALL SELECT * FROM json_each_text(b::json)
                    ) pairs GROUP BY key) sums), '{}')
            $$""",
        ],
    ),
    (
        7,
        [
            # Alerts (issue 22): who hears of which changes, through which Apprise URL.
            """CREATE TABLE alerts (
                id bigserial PRIMARY KEY,
                name text NOT NULL UNIQUE,
                target text NOT NULL,
                kinds text NOT NULL,
                batch text,
                contains text,
                has_urls boolean NOT NULL DEFAULT false,
                reminder_s double precision,
                min_regions integer,
                created_at timestamptz NOT NULL,
                last_sent_at timestamptz,
                last_error text,
                last_error_at timestamptz
            )""",
            # --state-of URLS-FILE: the URLs an alert watches, looked up one change at a time.
            """CREATE TABLE alert_urls (
                alert_id bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
                url text NOT NULL,
                PRIMARY KEY (alert_id, url)
            )""",
            # The outbox: one row per change to tell, written in the transaction that records
            # the change; senders claim due rows (state sending, next_attempt_at = the lease's
            # end, so a killed sender's rows fall due again). grp: b:<batch id> or w:<minute>.
            # No foreign key to alerts, on purpose: a writer whose cached alert was removed a
            # moment ago must not fail its result's transaction; removal deletes the rows.
            """CREATE TABLE alert_outbox (
                id bigserial PRIMARY KEY,
                alert_id bigint NOT NULL,
                grp text NOT NULL,
                url text NOT NULL,
                change text NOT NULL,
                job_id bigint,
                region text,
                payload jsonb NOT NULL,
                state text NOT NULL DEFAULT 'pending',
                created_at timestamptz NOT NULL,
                next_attempt_at timestamptz NOT NULL,
                attempts integer NOT NULL DEFAULT 0,
                claimed_by text,
                sent_at timestamptz,
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
            # runner cancel --batch (issue 23): a batch taken back is marked once; its jobs
            # still queued are cancelled from then on in every read (db.models.taken_back),
            # instead of writing a new version of a million job rows and their index entries.
            "ALTER TABLE batches ADD COLUMN cancelled_at timestamptz",
            "CREATE INDEX batches_cancelled ON batches (id) WHERE cancelled_at IS NOT NULL",
        ],
    ),
    (
        9,
        [
            # Issue 25: the cap's count and window come from the caller (db/limits.py: cap_of),
            # no longer fixed in SQL: `rate` (the slots' spacing, 95% of the host's limit)
            # capped the grants at 19 per 1.25 s for a 20/s host, 15/s. Now p_cap grants (the
            # host's own limit) in any p_window, and consecutive grants at least p_gap apart.
            # An overload beside version 3's function (other arguments), not a replacement:
            # workers not yet upgraded keep calling theirs during a rolling upgrade.
            """CREATE FUNCTION urltester_admit(p_host text, p_rate double precision, p_conns integer,
                    p_worker text, p_slot double precision, p_early double precision, p_lease text,
                    p_ttl double precision, p_cap integer, p_window double precision, p_gap double precision)
                RETURNS TABLE (granted boolean, wait double precision, slot double precision,
                               lease text, now double precision)
                LANGUAGE plpgsql AS $$
            DECLARE
                v_now double precision := extract(epoch from clock_timestamp());
                v_next double precision;
                v_paused double precision;
                v_slot double precision := p_slot;
                v_at double precision;
                v_count integer;
            BEGIN
                INSERT INTO host_pace (host) VALUES (p_host) ON CONFLICT (host) DO NOTHING;
                SELECT h.next_slot, h.paused_until INTO v_next, v_paused FROM host_pace h
                    WHERE h.host = p_host FOR UPDATE;
                IF v_slot IS NOT NULL AND (v_slot < v_paused OR v_slot < v_now - 2.0 OR v_slot > v_now + 3600) THEN
                    v_slot := NULL;
                END IF;
                IF v_slot IS NOT NULL AND v_slot - v_now > p_early THEN
                    RETURN QUERY SELECT false, v_slot - v_now, v_slot, NULL::text, v_now;
                    RETURN;
                END IF;
                IF v_slot IS NULL AND p_rate > 0 THEN
                    v_slot := greatest(v_next, v_now, v_paused);
                    v_next := v_slot + 1.0 / p_rate;
                    UPDATE host_pace SET next_slot = v_next WHERE host = p_host;
                    IF v_slot - v_now > p_early THEN
                        RETURN QUERY SELECT false, v_slot - v_now, v_slot, NULL::text, v_now;
                        RETURN;
                    END IF;
                ELSIF v_slot IS NULL AND v_paused > v_now THEN
                    RETURN QUERY SELECT false, v_paused - v_now, NULL::double precision, NULL::text, v_now;
                    RETURN;
                END IF;
                IF p_rate > 0 THEN
                    DELETE FROM host_grants WHERE host = p_host AND at <= v_now - p_window;
                    SELECT max(g.at) INTO v_at FROM host_grants g WHERE g.host = p_host;
                    IF v_at IS NOT NULL AND v_at + p_gap - v_now > p_early THEN
                        RETURN QUERY SELECT false, v_at + p_gap - v_now, v_slot, NULL::text, v_now;
                        RETURN;
                    END IF;
                    SELECT g.at INTO v_at FROM host_grants g WHERE g.host = p_host ORDER BY g.at DESC
                        LIMIT 1 OFFSET greatest(p_cap, 1) - 1;
                    IF FOUND THEN
                        RETURN QUERY SELECT false, v_at + p_window - v_now + 0.001, v_slot, NULL::text, v_now;
                        RETURN;
                    END IF;
                END IF;
                IF p_conns > 0 THEN
                    DELETE FROM host_leases WHERE host = p_host AND expires_at < v_now;
                    SELECT count(*) INTO v_count FROM host_leases WHERE host = p_host;
                    IF v_count >= p_conns THEN
                        IF p_rate > 0 THEN
                            v_slot := greatest(v_next, v_now, v_paused);
                            UPDATE host_pace SET next_slot = v_slot + 1.0 / p_rate WHERE host = p_host;
                            RETURN QUERY SELECT false, greatest(v_slot - v_now, 0.02), v_slot, NULL::text, v_now;
                        ELSE
                            RETURN QUERY SELECT false, 0.1::double precision, NULL::double precision, NULL::text, v_now;
                        END IF;
                        RETURN;
                    END IF;
                    INSERT INTO host_leases (id, host, worker, expires_at) VALUES (p_lease, p_host, p_worker, v_now + p_ttl);
                END IF;
                IF p_rate > 0 THEN
                    INSERT INTO host_grants (host, at) VALUES (p_host, v_now);
                END IF;
                RETURN QUERY SELECT true, 0.0::double precision, NULL::double precision,
                    CASE WHEN p_conns > 0 THEN p_lease END, v_now;
            END
            $$""",
        ],
    ),
]
