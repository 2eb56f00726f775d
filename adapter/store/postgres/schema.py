"""The PostgreSQL store's tables, and the versioned migrations that create them.

`MIGRATIONS[n]` takes a schema from version n to n + 1, in one transaction, and is
recorded in `schema_migrations`. Never edit an entry that has been released: append.
Replicas starting at once queue on an advisory lock, so exactly one of them migrates
and the others find the work done.
"""

from __future__ import annotations

from asyncpg.pool import PoolConnectionProxy
from asyncpg.protocol import Record

from adapter.store.base import StoreError

# One admission of the fleet-wide rate limiter, in one round trip: wait for the
# account's lock, then (each statement of a plpgsql function sees what committed before
# it began, so what the lock's previous holder recorded) check the limits and record the
# start. A request that may start gets its id; one that may not, how long to wait
# (-1: until some request in flight ends) and whether only its sender's pace holds it.
# Bookkeeping, not records: committed without waiting for the disk.
RATE_ADMIT = """
    CREATE FUNCTION rate_admit(
        p_scope text, p_lock text, p_replica text, p_count integer, p_window float8,
        p_max_concurrency integer, p_max_request float8, p_sender text, p_sender_interval float8,
        OUT request_id bigint, OUT wait float8, OUT sender_only boolean
    ) LANGUAGE plpgsql AS $$
    DECLARE
        now_ timestamptz;
        in_window integer;
        oldest timestamptz;
        in_flight integer;
        ready timestamptz;
        sender_next timestamptz;
    BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        PERFORM pg_advisory_xact_lock(hashtextextended(p_lock, 0));
        now_ := clock_timestamp();
        sender_only := false;
        SELECT count(*) INTO in_flight FROM rate_request
        WHERE scope = p_scope AND done_at IS NULL
          AND started_at > now_ - make_interval(secs => p_max_request)
          AND replica_id IN (SELECT id FROM replica WHERE alive_until > now_);
        IF in_flight >= p_max_concurrency THEN
            wait := -1;
            RETURN;
        END IF;
        SELECT count(*), min(started_at) INTO in_window, oldest FROM rate_request
        WHERE scope = p_scope AND started_at > now_ - make_interval(secs => p_window);
        SELECT paused_until INTO ready FROM rate_pause WHERE scope = p_scope;
        IF in_window >= p_count THEN
            ready := greatest(ready, oldest + make_interval(secs => p_window));
        END IF;
        IF ready > now_ THEN
            wait := extract(epoch FROM ready - now_);
            RETURN;
        END IF;
        IF p_sender IS NOT NULL THEN
            SELECT next_start INTO sender_next FROM rate_sender
            WHERE scope = p_scope AND sender = p_sender;
            IF sender_next > now_ THEN
                wait := extract(epoch FROM sender_next - now_);
                sender_only := true;
                RETURN;
            END IF;
            INSERT INTO rate_sender (scope, sender, next_start)
            VALUES (p_scope, p_sender, now_ + make_interval(secs => p_sender_interval))
            ON CONFLICT (scope, sender) DO UPDATE SET next_start = excluded.next_start;
        END IF;
        INSERT INTO rate_request (scope, replica_id, started_at)
        VALUES (p_scope, p_replica, now_) RETURNING id INTO request_id;
        -- Rows that count for nothing any more: out of the window, no longer in flight.
        DELETE FROM rate_request
        WHERE scope = p_scope AND started_at <= now_ - make_interval(secs => p_window)
          AND (done_at IS NOT NULL
               OR started_at <= now_ - make_interval(secs => p_max_request)
               OR replica_id NOT IN (SELECT id FROM replica WHERE alive_until > now_));
    END
    $$
"""

# The admission as Twilio counts requests (migration 2): a request holds one of
# `p_count` places from its start until its answer (`done_at`) and for `p_window` after;
# one in flight holds its place while its replica lives and for `p_max_request` at most.
# A sender's requests hold places of their own the same way (`p_sender_count` in
# `p_sender_window`), and its starts are spaced `p_sender_interval` apart.
RATE_ADMIT_HELD_UNTIL_ANSWERED = """
    CREATE FUNCTION rate_admit(
        p_scope text, p_lock text, p_replica text, p_count integer, p_window float8,
        p_max_concurrency integer, p_max_request float8, p_sender text, p_sender_interval float8,
        p_sender_count integer, p_sender_window float8,
        OUT request_id bigint, OUT wait float8, OUT sender_only boolean
    ) LANGUAGE plpgsql AS $$
    DECLARE
        now_ timestamptz;
        held integer;
        in_flight integer;
        first_free timestamptz;
        sender_held integer;
        sender_first_free timestamptz;
        ready timestamptz;
        sender_next timestamptz;
    BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        PERFORM pg_advisory_xact_lock(hashtextextended(p_lock, 0));
        now_ := clock_timestamp();
        sender_only := false;
        -- The requests that hold a place: in flight (at a live replica, not too long),
        -- or answered within the longer of the two windows.
        SELECT count(*) FILTER (WHERE done_at IS NULL),
               count(*) FILTER (WHERE done_at IS NULL
                                   OR done_at > now_ - make_interval(secs => p_window)),
               min(done_at) FILTER (WHERE done_at > now_ - make_interval(secs => p_window)),
               count(*) FILTER (WHERE sender = p_sender
                                  AND (done_at IS NULL OR done_at > now_ - make_interval(
                                           secs => p_sender_window))),
               min(done_at) FILTER (WHERE sender = p_sender AND done_at > now_ - make_interval(
                                        secs => p_sender_window))
        INTO in_flight, held, first_free, sender_held, sender_first_free
        FROM rate_request
        WHERE scope = p_scope
          AND ((done_at IS NULL
                AND started_at > now_ - make_interval(secs => p_max_request)
                AND replica_id IN (SELECT id FROM replica WHERE alive_until > now_))
               OR done_at > now_ - make_interval(
                      secs => greatest(p_window, coalesce(p_sender_window, 0))));
        IF in_flight >= p_max_concurrency THEN
            wait := -1;
            RETURN;
        END IF;
        SELECT paused_until INTO ready FROM rate_pause WHERE scope = p_scope;
        IF held >= p_count THEN
            IF first_free IS NULL THEN
                wait := -1;  -- every place is held in flight: until one is answered
                RETURN;
            END IF;
            ready := greatest(ready, first_free + make_interval(secs => p_window));
        END IF;
        IF ready > now_ THEN
            wait := extract(epoch FROM ready - now_);
            RETURN;
        END IF;
        IF p_sender IS NOT NULL THEN
            SELECT next_start INTO sender_next FROM rate_sender
            WHERE scope = p_scope AND sender = p_sender;
            IF sender_held >= p_sender_count THEN
                IF sender_first_free IS NULL THEN
                    wait := -1;
                    sender_only := true;
                    RETURN;
                END IF;
                sender_next := greatest(
                    sender_next, sender_first_free + make_interval(secs => p_sender_window));
            END IF;
            IF sender_next > now_ THEN
                wait := extract(epoch FROM sender_next - now_);
                sender_only := true;
                RETURN;
            END IF;
            INSERT INTO rate_sender (scope, sender, next_start)
            VALUES (p_scope, p_sender, now_ + make_interval(secs => p_sender_interval))
            ON CONFLICT (scope, sender) DO UPDATE SET next_start = excluded.next_start;
        END IF;
        INSERT INTO rate_request (scope, replica_id, started_at, sender)
        VALUES (p_scope, p_replica, now_, p_sender) RETURNING id INTO request_id;
        -- Rows that count for nothing any more: answered before both windows, or
        -- in flight at a replica that is gone or for longer than any request takes.
        DELETE FROM rate_request
        WHERE scope = p_scope
          AND (done_at <= now_ - make_interval(
                   secs => greatest(p_window, coalesce(p_sender_window, 0)))
               OR (done_at IS NULL
                   AND (started_at <= now_ - make_interval(secs => p_max_request)
                        OR replica_id NOT IN (SELECT id FROM replica WHERE alive_until > now_))));
    END
    $$
"""

RATE_DONE = """
    CREATE FUNCTION rate_done(p_request_id bigint) RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        UPDATE rate_request SET done_at = clock_timestamp() WHERE id = p_request_id;
    END
    $$
"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # Each running store registers here and renews `alive_until` while it lives: a
        # claim held by a replica that stopped renewing is treated as expired, so the
        # fleet takes over a dead replica's work without waiting out long job leases.
        """
        CREATE TABLE replica (
            id          text PRIMARY KEY,
            name        text NOT NULL,            -- host:pid, for operators
            started_at  timestamptz NOT NULL DEFAULT now(),
            alive_until timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE inbound (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            message_id    text NOT NULL UNIQUE,  -- the dedup key, fleet-wide
            conversation  text NOT NULL,
            payload       json NOT NULL,
            received_at   timestamptz NOT NULL,
            state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
            not_before    timestamptz,           -- released for later: not claimable before
            claimed_until timestamptz,
            claimed_by    text,                  -- replica.id of the claim's holder
            error         text,
            finished_at   timestamptz
        )
        """,
        # Done texts pile up forever (the dedup memory): claims only look at pending ones.
        "CREATE INDEX inbound_pending ON inbound (id) WHERE state = 'pending'",
        "CREATE INDEX inbound_pending_by_conversation ON inbound (conversation, id) "
        "WHERE state = 'pending'",
        """
        CREATE TABLE outbound (
            id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            conversation      text NOT NULL,
            payload           json NOT NULL,
            inbound_id        bigint REFERENCES inbound (id),  -- NULL for proactive sends
            created_at        timestamptz NOT NULL DEFAULT now(),
            state             text NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'sent', 'failed', 'dead')),
            not_before        timestamptz,
            claimed_until     timestamptz,
            claimed_by        text,
            attempts          integer NOT NULL DEFAULT 0,
            in_doubt_since    timestamptz,
            message_sid       text UNIQUE,
            twilio_status     text,
            status_is_final   boolean NOT NULL DEFAULT false,
            status_updated_at timestamptz,
            error_code        integer,
            error_message     text
        )
        """,
        "CREATE INDEX outbound_pending ON outbound (id) WHERE state = 'pending'",
        "CREATE INDEX outbound_pending_by_conversation ON outbound (conversation, id) "
        "WHERE state = 'pending'",
        "CREATE INDEX outbound_by_state ON outbound (state, id)",
        # Sent rows pile up; the status refresher only wants the few still moving.
        "CREATE INDEX outbound_unfinished ON outbound (status_updated_at) "
        "WHERE state = 'sent' AND NOT status_is_final",
        """
        CREATE TABLE conversation_state (
            conversation text PRIMARY KEY,
            state        json NOT NULL,
            updated_at   timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE opt_out (
            ours       text NOT NULL,
            person     text NOT NULL,
            opted_out  boolean NOT NULL,
            reason     text NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (ours, person)
        )
        """,
        """
        CREATE TABLE history (
            sid          text PRIMARY KEY,
            conversation text NOT NULL,
            direction    text NOT NULL,
            status       text,
            error_code   integer,
            body         text NOT NULL,
            num_media    integer NOT NULL,
            num_segments integer NOT NULL,
            at           timestamptz NOT NULL,
            payload      json NOT NULL
        )
        """,
        "CREATE INDEX history_by_time ON history (conversation, at, sid)",
        """
        CREATE TABLE history_sync (
            conversation   text PRIMARY KEY,
            synced_through timestamptz NOT NULL
        )
        """,
        # The fleet-wide rate limiter (adapter.store.postgres.limiter): one row per
        # request to Twilio that is still in flight or still inside the sliding window.
        """
        CREATE TABLE rate_request (
            id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            scope      text NOT NULL,
            replica_id text NOT NULL,
            started_at timestamptz NOT NULL,
            done_at    timestamptz  -- NULL while in flight
        )
        """,
        "CREATE INDEX rate_request_by_start ON rate_request (scope, started_at)",
        """
        CREATE TABLE rate_sender (
            scope      text NOT NULL,
            sender     text NOT NULL,
            next_start timestamptz NOT NULL,
            PRIMARY KEY (scope, sender)
        )
        """,
        """
        CREATE TABLE rate_pause (
            scope        text PRIMARY KEY,
            paused_until timestamptz NOT NULL
        )
        """,
        RATE_ADMIT,
        RATE_DONE,
    ),
    (
        # Inbound catch-up: how far it has looked at Twilio (one row, name 'catchup'),
        # and the lease that lets one replica of the fleet do it at a time.
        """
        CREATE TABLE watermark (
            name   text PRIMARY KEY,
            moment timestamptz NOT NULL
        )
        """,
        """
        CREATE TABLE lease (
            name   text PRIMARY KEY,
            holder text NOT NULL,
            until  timestamptz NOT NULL
        )
        """,
        # Claims order a conversation's pending texts by when Twilio received them.
        "CREATE INDEX inbound_pending_by_time ON inbound (conversation, received_at, id) "
        "WHERE state = 'pending'",
    ),
    (
        # Limits as Twilio counts them: a request holds its place from its start until
        # its answer and for the window after it (see adapter.ratelimit), a sender's
        # requests likewise in a window of their own.
        "ALTER TABLE rate_request ADD COLUMN sender text",
        "CREATE INDEX rate_request_by_sender ON rate_request (scope, sender) "
        "WHERE sender IS NOT NULL",
        "DROP FUNCTION rate_admit(text, text, text, integer, float8, integer, float8, text, "
        "float8)",
        RATE_ADMIT_HELD_UNTIL_ANSWERED,
    ),
    (
        # Retention deletes finished rows in batches: a handled text goes only once no
        # outbox row refers to it (looked up by this index, also used by the foreign
        # key's check), the history cache by age across conversations.
        "CREATE INDEX outbound_by_inbound ON outbound (inbound_id) WHERE inbound_id IS NOT NULL",
        "CREATE INDEX history_by_at ON history (at)",
    ),
)


async def migrate(conn: PoolConnectionProxy[Record], schema: str) -> int:
    """Bring `schema` (created if missing) to the newest version; returns that version."""
    async with conn.transaction():
        # Held until commit: a replica starting meanwhile waits, then sees our work.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"sms-adapter migrations {schema}",
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
        await conn.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {quote_identifier(schema)}.schema_migrations (
                version    integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        version = await conn.fetchval(
            f"SELECT coalesce(max(version), 0) FROM {quote_identifier(schema)}.schema_migrations"
        )
        assert isinstance(version, int)
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the schema {schema} is at version {version}, newer than this sms-adapter "
                f"knows ({len(MIGRATIONS)}): upgrade sms-adapter"
            )
        # Statements name tables unqualified: they land in the schema made current here.
        await conn.execute(f"SET LOCAL search_path TO {quote_identifier(schema)}")
        for target, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", target)
    return len(MIGRATIONS)


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
