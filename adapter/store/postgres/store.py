"""The store in PostgreSQL, shared by any number of adapter replicas.

Selected with `SMS_ADAPTER_DATABASE=postgresql://user@host/db` (`postgres://` too); add
`?schema=NAME` to keep the tables in a schema of their own (created if missing).

How replicas share one queue without stepping on each other:

- Dedup is the unique key on `message_id`, so it holds fleet-wide by construction.
- A claim takes rows with `FOR UPDATE SKIP LOCKED`, so replicas never wait on (or
  take) a row another is claiming. Per-conversation order needs more than row locks:
  ids are handed out at INSERT but commits land in any order, so a text can become
  visible *behind* a newer one that is already claimed. A row is therefore claimable
  only while no pending row of its conversation is under a live claim, and that is
  decided under a per-conversation advisory lock, in a statement that starts after
  the lock is held (READ COMMITTED: it sees every claim committed before it).
- A claim is live while its lease runs AND the replica holding it is alive: every
  store renews a heartbeat row (`replica`), so the work of a replica that died is
  taken over `replica_ttl` + `takeover_grace` seconds later, however long the job leases
  are. `open()` never touches other replicas' claims; `close()` drops ours at once.
- Fencing: a replica cut off from the database keeps running. It knows its claims are
  safe only until `replica_ttl` after the last heartbeat it got through
  (`claims_safe_until`): past that it starts no request to Twilio and cancels those in
  flight (the sender does). The others wait `takeover_grace` longer (the longest a
  request may take), so a request cancelled at the fence has reached Twilio or never
  will before they look for it there; a text is never sent twice.
- New work is announced with NOTIFY, after its commit and at most once per
  NOTIFY_INTERVAL; a LISTEN connection calls the hooks given to `watch_for_work`, so
  idle replicas wake without waiting for their next poll.
- Times are stamped with the database's clock, one clock for the fleet; outbound
  claims compare with the caller's `now`, as the contract says.

Behaviour the contract leaves open, chosen as in `SQLiteStore` and pinned by the suite:
LookupError for a job that does not exist or is no longer pending; releases of such a
job do nothing; unknown statuses are ignored; naive datetimes raise ValueError. Also:
`mark_attempt_started` raises LookupError when another replica has claimed the row
since (our claim lapsed): sending it now could send it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from adapter.ratelimit import Limiter, Rate
from adapter.store.base import (
    STATUS_WATCH_WINDOW,
    HistoryEntry,
    InboundJob,
    OutboundJob,
    OutboundRecord,
    OutboxStats,
    ReplyDraft,
    StatusChange,
    Store,
    StoreError,
)
from adapter.store.postgres.limiter import PostgresLimiter
from adapter.store.postgres.schema import migrate, quote_identifier
from adapter.store.rows import (
    RECORD_COLUMNS,
    decode,
    encode,
    history_values,
    moves_forward,
    read_row,
    save_history_sql,
)
from adapter.twilio.client import REQUEST_TIMEOUT
from adapter.twilio.statuses import FINAL_STATUSES

logger = logging.getLogger(__name__)

SCHEMES = frozenset({"postgresql", "postgres"})
# A replica that has not renewed its heartbeat for this long is taken for dead and its
# claims are taken over. Long enough to ride out a database failover or a GC pause.
REPLICA_TTL = 15.0
# The most NOTIFYs a store sends per second is 1 / NOTIFY_INTERVAL, however busy it is.
NOTIFY_INTERVAL = 0.02
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def is_postgres_url(database: str) -> bool:
    return urlsplit(database).scheme in SCHEMES


def redact(url: str) -> str:
    """`url` fit for a log line: without its password (in the netloc or the query)."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{netloc}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "password" for key, _ in query):
        masked = [(key, "***" if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(masked, safe="*"))
    return urlunsplit(parts)


def _split_schema(url: str) -> tuple[str, str | None]:
    """(the URL for asyncpg, the `schema` query parameter), which asyncpg would
    otherwise send to the server as an unknown setting."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    rest = [(key, value) for key, value in query if key != "schema"]
    return urlunsplit(parts._replace(query=urlencode(rest))), (schemas[-1] if schemas else None)


# --- claims ----------------------------------------------------------------------------

# The caller's `now` for outbound claims; the database's for inbound ones (None).
_NOW = "coalesce($1::timestamptz, now())"
_LIVE = "live AS (SELECT id FROM replica WHERE alive_until > clock_timestamp())"


def claim_lock_prefix(schema: str, table: str) -> str:
    """What the advisory lock keys of one table's conversations start with."""
    return f"sms-adapter {schema}.{table} "


# A conversation's order: texts by when Twilio received them (one found late by inbound
# catch-up goes before later ones still pending), outbox rows as they were added.
_ORDER = {"inbound": "received_at, id", "outbound": "id"}


def _heads(table: str, among: str = "") -> str:
    """The oldest pending row of each conversation (`among`: of some conversations only).
    One pass over the pending rows in conversation order: no per-row subquery."""
    return f"""
        SELECT DISTINCT ON (conversation) id FROM {table}
        WHERE state = 'pending'{among}
        ORDER BY conversation, {_ORDER[table]}
    """


def _claimable(row: str, table: str) -> str:
    """`row` (a head) is due, and no row of its conversation is under a live claim."""
    return f"""
        ({row}.not_before IS NULL OR {row}.not_before <= {_NOW})
        AND NOT EXISTS (
            SELECT 1 FROM {table} AS other
            WHERE other.conversation = {row}.conversation
              AND other.state = 'pending'
              AND other.claimed_until > {_NOW}
              AND other.claimed_by IN (SELECT id FROM live))
    """


def _lock_conversations(table: str) -> str:
    """Step one: lock up to $2 conversations that look claimable, oldest first. One that
    another replica is claiming right now is skipped, not waited for, and the next one
    tried: replicas woken together must not all come back empty-handed."""
    return f"""
        WITH {_LIVE},
        candidates AS MATERIALIZED (
            SELECT job.id, job.conversation FROM {table} AS job
            WHERE job.id IN ({_heads(table)}) AND {_claimable("job", table)}
            ORDER BY job.id LIMIT 2 * $2
        )
        SELECT conversation FROM candidates
        WHERE pg_try_advisory_xact_lock(hashtextextended($3 || conversation, 0))
        LIMIT $2
    """


def _claim_rows(table: str, columns: str) -> str:
    """Step two, a new statement and so a new snapshot: claim what is still claimable.
    The row lock's recheck (a row changed since the snapshot) sees job's own columns."""
    return f"""
        WITH {_LIVE},
        chosen AS (
            SELECT job.id FROM {table} AS job
            WHERE job.id IN ({_heads(table, " AND conversation = ANY($2::text[])")})
              AND job.state = 'pending' AND {_claimable("job", table)}
            FOR UPDATE OF job SKIP LOCKED
        )
        UPDATE {table} AS job
        SET claimed_until = {_NOW} + make_interval(secs => $3), claimed_by = $4
        FROM chosen WHERE job.id = chosen.id
        RETURNING {columns}
    """


# A row released for later, or waiting for a retry, is not due and holds back the rest
# of its conversation (it is still the oldest pending row).
LOCK_INBOUND = _lock_conversations("inbound")
CLAIM_INBOUND = _claim_rows(
    "inbound", "job.id, job.message_id, job.conversation, job.payload, job.received_at"
)
LOCK_OUTBOUND = _lock_conversations("outbound")
CLAIM_OUTBOUND = _claim_rows(
    "outbound",
    "job.id, job.conversation, job.payload, job.created_at, job.attempts, job.in_doubt_since",
)

NOTIFY = "SELECT pg_notify($1, kind) FROM unnest($2::text[]) AS kind"

DELETE_FINISHED_OUTBOUND = """
    WITH gone AS (
        DELETE FROM outbound WHERE id IN (
            SELECT id FROM outbound
            WHERE state IN ('sent', 'failed', 'dead') AND created_at < $1
              AND (state != 'sent' OR status_is_final
                   OR created_at < least($1, now() - make_interval(secs => $3)))
            ORDER BY state, id LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*) FROM gone
"""

DELETE_HANDLED_INBOUND = """
    WITH gone AS (
        DELETE FROM inbound WHERE id IN (
            SELECT id FROM inbound
            WHERE state = 'done' AND finished_at < $1
              AND NOT EXISTS (SELECT 1 FROM outbound WHERE inbound_id = inbound.id)
            ORDER BY state, id LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*) FROM gone
"""

DELETE_OLD_HISTORY = """
    WITH gone AS (
        DELETE FROM history WHERE sid IN (
            SELECT sid FROM history WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*) FROM gone
"""

DELETE_EXPIRED_STATES = """
    WITH gone AS (
        DELETE FROM conversation_state WHERE conversation IN (
            SELECT conversation FROM conversation_state
            WHERE starts_with(conversation, $1) AND updated_at < $2
            LIMIT $3 FOR UPDATE SKIP LOCKED
        )
        RETURNING 1
    )
    SELECT count(*) FROM gone
"""

SAVE_STATE = """
    INSERT INTO conversation_state (conversation, state, updated_at) VALUES ($1, $2, now())
    ON CONFLICT (conversation) DO UPDATE
    SET state = excluded.state, updated_at = excluded.updated_at
"""

ENQUEUE_OUTBOUND = """
    INSERT INTO outbound (conversation, payload)
    SELECT draft.conversation, draft.payload
    FROM unnest($1::text[], $2::json[]) WITH ORDINALITY AS draft (conversation, payload, position)
    ORDER BY draft.position
    RETURNING id
"""

# The text done, its replies in the outbox in order, the state saved: all or nothing, and
# nothing at all unless the text was still pending.
FINISH_INBOUND = """
    WITH finished AS (
        UPDATE inbound
        SET state = 'done', claimed_until = NULL, claimed_by = NULL, error = $2,
            finished_at = now()
        WHERE id = $1 AND state = 'pending'
        RETURNING id
    ), replies AS (
        INSERT INTO outbound (conversation, payload, inbound_id)
        SELECT draft.conversation, draft.payload, finished.id
        FROM finished,
             unnest($3::text[], $4::json[]) WITH ORDINALITY AS draft (conversation, payload, position)
        ORDER BY draft.position
        RETURNING id
    ), saved AS (
        INSERT INTO conversation_state (conversation, state, updated_at)
        SELECT $5::text, $6::json, now() FROM finished WHERE $5::text IS NOT NULL
        ON CONFLICT (conversation) DO UPDATE
        SET state = excluded.state, updated_at = excluded.updated_at
    )
    SELECT EXISTS (SELECT 1 FROM finished) AS finished,
           ARRAY(SELECT id FROM replies ORDER BY id) AS reply_ids
"""


SAVE_HISTORY = save_history_sql("$")

# Registers this replica, or renews its heartbeat: its claims are live until then.
HEARTBEAT = """
    INSERT INTO replica (id, name, alive_until)
    VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
    ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until
"""


class PostgresStore(Store):
    """The store in the PostgreSQL database at `url`.

    `schema` (or `?schema=` in the URL) names the schema holding the tables (default
    `public`). `replica_ttl`: seconds after its last heartbeat that a replica's claims
    are taken over. `pool_size`: most connections this store opens at once, besides
    its LISTEN connection.
    """

    def limiter(self, *, max_concurrency: int, rate: Rate, per_sender_mps: float | None) -> Limiter:
        """Fleet-wide: every replica on this database shares the account's limits."""
        return PostgresLimiter(
            self, max_concurrency=max_concurrency, rate=rate, per_sender_mps=per_sender_mps
        )

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_size: int = 10,
        replica_ttl: float = REPLICA_TTL,
        takeover_grace: float = REQUEST_TIMEOUT,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        if not is_postgres_url(url):
            raise ValueError(f"not a postgresql:// URL: {redact(url)}")
        self._dsn, url_schema = _split_schema(url)
        self.schema = schema or url_schema or "public"
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError(
                f"schema {self.schema!r}: use letters, digits and _ (at most 63, not first a digit)"
            )
        self.url = redact(url)
        self.replica_id = uuid.uuid4().hex
        self.replica_name = f"{socket.gethostname()}:{os.getpid()}"
        self.replica_ttl = replica_ttl
        self.takeover_grace = takeover_grace
        # Loop time until which our claims are safe: a heartbeat's send time + the TTL.
        self._safe_until = float("-inf")
        # What pg_stat_activity shows for this store's connections.
        self.application_name = f"sms-adapter {self.replica_name} {self.replica_id[:8]}"[:63]
        self._pool_size = pool_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        # NOTIFY channels are identifiers of at most 63 bytes; a clash only wakes
        # another schema's workers for nothing.
        self.channel = f"sms_adapter.{self.schema}"[:63]
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._notifier = _Notifier(self._notify)

    def watch_for_work(self, inbound: Callable[[], None], outbound: Callable[[], None]) -> None:
        self._watchers = (inbound, outbound)

    async def open(self) -> None:
        if self._pool is not None:
            raise RuntimeError("the store is already open")
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                server_settings=self._server_settings(),
            )
        except Exception as exc:
            # Whatever went wrong (refused, unknown host, bad password, no such
            # database), start-up must end with one line that says where and why.
            raise StoreError(
                f"cannot open the PostgreSQL store {self.url}: {_describe(exc)}"
            ) from exc
        try:
            async with pool.acquire() as conn:
                await migrate(conn, self.schema)
                await self._heartbeat(conn)
                # Rows of replicas long gone say nothing any more; their claims are
                # already dead with them.
                await conn.execute(
                    "DELETE FROM replica WHERE alive_until < now() - interval '1 day'"
                )
        except BaseException as exc:
            await _close_pool(pool)
            if isinstance(exc, DATABASE_ERRORS):
                raise StoreError(
                    f"cannot open the PostgreSQL store {self.url}: {_describe(exc)}"
                ) from exc
            raise
        self._pool = pool
        self._tasks = [asyncio.create_task(self._keep_alive(), name="postgres-store-heartbeat")]
        if self._watchers is not None:
            self._tasks.append(
                asyncio.create_task(self._listen(*self._watchers), name="postgres-store-listen")
            )

    async def close(self) -> None:
        if self._pool is None:
            return
        await self._notifier.drain()
        pool, self._pool = self._pool, None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        try:
            async with pool.acquire(timeout=5) as conn:
                # Whatever we still hold is claimable by the others at once: tell them.
                await conn.execute("DELETE FROM replica WHERE id = $1", self.replica_id)
                await conn.execute(NOTIFY, self.channel, ["inbound", "outbound"])
        except DATABASE_ERRORS as exc:
            logger.warning(
                "PostgreSQL store %s: could not sign off (%s); other replicas take over "
                "this one's claims within %gs",
                self.url,
                _describe(exc),
                self.replica_ttl + self.takeover_grace,
            )
        await _close_pool(pool)

    # --- inbound -----------------------------------------------------------------

    async def add_inbound(
        self, message_id: str, conversation: str, payload: dict[str, Any], received_at: datetime
    ) -> bool:
        encoded = encode(payload)
        received = _aware(received_at)
        async with self.connection() as conn:
            added = await conn.fetchval(
                """
                INSERT INTO inbound (message_id, conversation, payload, received_at)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (message_id) DO NOTHING
                RETURNING id
                """,
                message_id,
                conversation,
                encoded,
                received,
            )
        if added is None:
            return False
        self._notifier.poke("inbound")
        return True

    async def claim_inbound(self, limit: int, lease_seconds: float) -> list[InboundJob]:
        if limit <= 0:
            return []
        rows = await self._claim(LOCK_INBOUND, CLAIM_INBOUND, "inbound", limit, lease_seconds)
        return [read_row(InboundJob, row, _as_is) for row in rows]

    async def renew_inbound(self, job_id: int, lease_seconds: float) -> bool:
        # Only while the claim is still ours: once the lease ran out another replica may
        # hold it, and extending its lease would hide that both are running the text.
        async with self.connection() as conn:
            renewed = await conn.fetchval(
                """
                UPDATE inbound SET claimed_until = now() + make_interval(secs => $2)
                WHERE id = $1 AND state = 'pending' AND claimed_by = $3
                RETURNING id
                """,
                job_id,
                lease_seconds,
                self.replica_id,
            )
        return renewed is not None

    async def finish_inbound(
        self,
        job_id: int,
        replies: list[ReplyDraft],
        state: tuple[str, dict[str, Any]] | None = None,
        error: str | None = None,
    ) -> list[int]:
        # Encoded here so a payload that is not JSON fails before anything is written.
        conversations = [reply.conversation for reply in replies]
        payloads = [encode(reply.payload) for reply in replies]
        saved_conversation, saved_state = (None, None) if state is None else state
        encoded_state = None if saved_state is None else encode(saved_state)
        async with self.connection() as conn:
            # One statement, so one transaction and one round trip.
            row = await conn.fetchrow(
                FINISH_INBOUND,
                job_id,
                error,
                conversations,
                payloads,
                saved_conversation,
                encoded_state,
            )
            assert row is not None
            if not row["finished"]:
                raise await _not_pending(conn, "inbound", job_id)
        if replies:
            self._notifier.poke("outbound")
        return list(row["reply_ids"])

    async def release_inbound(self, job_id: int, not_before: datetime | None = None) -> None:
        # Postponed (the bot asked for later) with not_before, not with a lease: a lease
        # lapses with the replica holding it, and the text is due then whoever is alive.
        await self._release("inbound", job_id, None if not_before is None else _aware(not_before))

    async def check_writable(self) -> None:
        # The heartbeat is a write; renewing it early does no harm. A database that went
        # read-only (a failover to a standby) or out of reach fails it.
        async with self.connection() as conn:
            await self._heartbeat(conn)

    def claims_safe_until(self) -> float | None:
        return self._safe_until

    async def _heartbeat(self, conn: asyncpg.Connection | PoolConnectionProxy[Any]) -> None:
        """Renew our row: others see us alive for the TTL plus the grace; we count on our
        claims for the TTL from before the statement was sent, whatever it took."""
        sent_at = asyncio.get_running_loop().time()
        await conn.execute(
            HEARTBEAT,
            self.replica_id,
            self.replica_name,
            self.replica_ttl + self.takeover_grace,
        )
        self._safe_until = max(self._safe_until, sent_at + self.replica_ttl)

    async def pending_inbound_count(self) -> int:
        async with self.connection() as conn:
            count = await conn.fetchval("SELECT count(*) FROM inbound WHERE state = 'pending'")
        return int(count)

    # --- conversation state ------------------------------------------------------

    async def load_state(self, conversation: str) -> dict[str, Any]:
        async with self.connection() as conn:
            state = await conn.fetchval(
                "SELECT state FROM conversation_state WHERE conversation = $1", conversation
            )
        return {} if state is None else decode(state)

    async def save_state(self, conversation: str, state: dict[str, Any]) -> None:
        encoded = encode(state)
        async with self.connection() as conn:
            await conn.execute(SAVE_STATE, conversation, encoded)

    # --- outbox ------------------------------------------------------------------

    async def enqueue_outbound(self, drafts: list[ReplyDraft]) -> list[int]:
        if not drafts:
            return []
        conversations = [draft.conversation for draft in drafts]
        payloads = [encode(draft.payload) for draft in drafts]
        async with self.connection() as conn:
            rows = await conn.fetch(ENQUEUE_OUTBOUND, conversations, payloads)
        self._notifier.poke("outbound")
        return sorted(row["id"] for row in rows)

    async def claim_outbound(
        self, limit: int, lease_seconds: float, now: datetime
    ) -> list[OutboundJob]:
        if limit <= 0:
            return []
        rows = await self._claim(
            LOCK_OUTBOUND, CLAIM_OUTBOUND, "outbound", limit, lease_seconds, _aware(now)
        )
        return [read_row(OutboundJob, row, _as_is) for row in rows]

    async def mark_attempt_started(self, job_id: int, at: datetime) -> None:
        await self._update_pending_outbound(
            job_id,
            # coalesce keeps the earliest attempt: that is when the doubt began.
            "attempts = attempts + 1, in_doubt_since = coalesce(in_doubt_since, $2)",
            _aware(at),
            held_by_us=True,
        )

    async def mark_sent(self, job_id: int, message_sid: str, twilio_status: str) -> None:
        await self._update_pending_outbound(
            job_id,
            """
            state = 'sent', claimed_until = NULL, claimed_by = NULL, in_doubt_since = NULL,
            message_sid = $2, twilio_status = $3, status_is_final = $4,
            status_updated_at = now(), error_code = NULL, error_message = NULL
            """,
            message_sid,
            twilio_status,
            twilio_status in FINAL_STATUSES,
        )

    async def schedule_retry(
        self, job_id: int, not_before: datetime, error: str, in_doubt: bool
    ) -> None:
        await self._update_pending_outbound(
            job_id,
            """
            claimed_until = NULL, claimed_by = NULL, not_before = $2, error_message = $3,
            in_doubt_since = CASE WHEN $4 THEN in_doubt_since END
            """,
            _aware(not_before),
            error,
            in_doubt,
        )

    async def mark_failed(
        self, job_id: int, error_code: int | None, error_message: str, dead: bool
    ) -> None:
        await self._update_pending_outbound(
            job_id,
            """
            state = $2, claimed_until = NULL, claimed_by = NULL, in_doubt_since = NULL,
            error_code = $3, error_message = $4
            """,
            "dead" if dead else "failed",
            error_code,
            error_message,
        )

    async def release_outbound(self, job_id: int) -> None:
        await self._release("outbound", job_id)

    async def get_outbound(self, job_id: int) -> OutboundRecord | None:
        async with self.connection() as conn:
            return await _get_record(conn, "id", job_id)

    async def find_outbound_by_sid(self, message_sid: str) -> OutboundRecord | None:
        async with self.connection() as conn:
            return await _get_record(conn, "message_sid", message_sid)

    async def list_outbound(
        self, state: str | None = None, limit: int = 100, *, twilio_status: str | None = None
    ) -> list[OutboundRecord]:
        if limit <= 0:
            return []
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {RECORD_COLUMNS} FROM outbound
                WHERE ($1::text IS NULL OR state = $1)
                  AND ($3::text IS NULL OR twilio_status = $3)
                ORDER BY id LIMIT $2
                """,
                state,
                limit,
                twilio_status,
            )
        return [read_row(OutboundRecord, row, _as_is) for row in rows]

    async def outbox_stats(self) -> OutboxStats:
        async with self.connection() as conn:
            row = await conn.fetchrow(
                "SELECT count(*), min(created_at) FROM outbound WHERE state = 'pending'"
            )
        assert row is not None
        return OutboxStats(depth=int(row[0]), oldest_pending_at=row[1])

    # --- delivery statuses -------------------------------------------------------

    async def update_status(
        self, message_sid: str, status: str, error_code: int | None
    ) -> StatusChange | None:
        async with self.connection() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, twilio_status FROM outbound WHERE message_sid = $1 FOR UPDATE",
                message_sid,
            )
            if row is None:
                return None
            changed = False
            if row["twilio_status"] == status:
                # A refresh confirming the status: ask again only after another wait.
                await conn.execute(
                    "UPDATE outbound SET status_updated_at = now() WHERE id = $1", row["id"]
                )
            elif moves_forward(row["twilio_status"], status):
                await conn.execute(
                    """
                    UPDATE outbound
                    SET twilio_status = $2, status_is_final = $3, status_updated_at = now(),
                        error_code = coalesce($4, error_code)
                    WHERE id = $1
                    """,
                    row["id"],
                    status,
                    status in FINAL_STATUSES,
                    error_code,
                )
                changed = True
            record = await _get_record(conn, "id", row["id"])
            assert record is not None  # the row is locked by this transaction
            return StatusChange(record, changed)

    async def unfinished_sent(self, older_than: datetime, limit: int) -> list[OutboundRecord]:
        if limit <= 0:
            return []
        async with self.connection() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {RECORD_COLUMNS} FROM outbound
                WHERE state = 'sent' AND NOT status_is_final AND status_updated_at < $1
                  AND created_at >= now() - make_interval(secs => $2)
                ORDER BY status_updated_at, id LIMIT $3
                """,
                _aware(older_than),
                STATUS_WATCH_WINDOW.total_seconds(),
                limit,
            )
        return [read_row(OutboundRecord, row, _as_is) for row in rows]

    # --- opt-out -----------------------------------------------------------------

    async def set_opted_out(self, ours: str, person: str, opted_out: bool, reason: str) -> None:
        async with self.connection() as conn:
            await conn.execute(
                """
                INSERT INTO opt_out (ours, person, opted_out, reason, updated_at)
                VALUES ($1, $2, $3, $4, now())
                ON CONFLICT (ours, person) DO UPDATE SET
                    opted_out = excluded.opted_out,
                    reason = excluded.reason,
                    updated_at = excluded.updated_at
                """,
                ours,
                person,
                opted_out,
                reason,
            )

    async def is_opted_out(self, ours: str, person: str) -> bool:
        async with self.connection() as conn:
            opted_out = await conn.fetchval(
                "SELECT opted_out FROM opt_out WHERE ours = $1 AND person = $2", ours, person
            )
        return bool(opted_out)

    # --- conversation history cache ------------------------------------------------

    async def save_history(self, entries: list[HistoryEntry]) -> None:
        rows = [history_values(entry, _aware(entry.at)) for entry in entries]
        if not rows:
            return
        async with self.connection() as conn:
            # One statement per entry, all in one transaction (executemany is atomic).
            await conn.executemany(SAVE_HISTORY, rows)

    async def read_history(
        self, conversation: str, *, limit: int, before: datetime | None = None
    ) -> list[HistoryEntry]:
        if limit <= 0:
            return []
        async with self.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM history
                WHERE conversation = $1 AND ($2::timestamptz IS NULL OR at < $2)
                ORDER BY at DESC, sid DESC LIMIT $3
                """,
                conversation,
                None if before is None else _aware(before),
                limit,
            )
        return [read_row(HistoryEntry, row, _as_is) for row in reversed(rows)]

    async def adapter_times(self, message_sids: list[str]) -> dict[str, datetime]:
        sids = sorted(set(message_sids))
        if not sids:
            return {}
        async with self.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT message_id AS sid, received_at AS at FROM inbound
                WHERE message_id = ANY($1::text[])
                UNION ALL
                SELECT message_sid, created_at FROM outbound WHERE message_sid = ANY($1::text[])
                """,
                sids,
            )
        return {row["sid"]: row["at"] for row in rows}

    async def unfinished_history(self, conversation: str, limit: int) -> list[HistoryEntry]:
        if limit <= 0:
            return []
        async with self.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT * FROM history
                WHERE conversation = $1 AND (status IS NULL OR status <> ALL($2::text[]))
                ORDER BY at, sid LIMIT $3
                """,
                conversation,
                sorted(FINAL_STATUSES),
                limit,
            )
        return [read_row(HistoryEntry, row, _as_is) for row in rows]

    async def history_synced_through(self, conversation: str) -> datetime | None:
        async with self.connection() as conn:
            moment = await conn.fetchval(
                "SELECT synced_through FROM history_sync WHERE conversation = $1", conversation
            )
        assert moment is None or isinstance(moment, datetime)
        return moment

    async def set_history_synced_through(self, conversation: str, moment: datetime) -> None:
        async with self.connection() as conn:
            await conn.execute(
                """
                INSERT INTO history_sync (conversation, synced_through) VALUES ($1, $2)
                ON CONFLICT (conversation) DO UPDATE SET synced_through = excluded.synced_through
                """,
                conversation,
                _aware(moment),
            )

    # --- inbound catch-up ----------------------------------------------------------

    async def catchup_watermark(self) -> datetime | None:
        async with self.connection() as conn:
            moment = await conn.fetchval("SELECT moment FROM watermark WHERE name = 'catchup'")
        assert moment is None or isinstance(moment, datetime)
        return moment

    async def advance_catchup_watermark(self, moment: datetime) -> datetime:
        async with self.connection() as conn:
            after = await conn.fetchval(
                """
                INSERT INTO watermark (name, moment) VALUES ('catchup', $1)
                ON CONFLICT (name) DO UPDATE
                SET moment = greatest(watermark.moment, excluded.moment)
                RETURNING moment
                """,
                _aware(moment),
            )
        assert isinstance(after, datetime)
        return after

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        # The database's clock, so replicas with skewed clocks still agree.
        async with self.connection() as conn:
            row = await conn.fetchrow(
                """
                INSERT INTO lease (name, holder, until)
                VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                WHERE lease.holder = excluded.holder OR lease.until <= clock_timestamp()
                RETURNING holder
                """,
                name,
                holder,
                seconds,
            )
        return row is not None

    async def release_lease(self, name: str, holder: str) -> None:
        async with self.connection() as conn:
            await conn.execute("DELETE FROM lease WHERE name = $1 AND holder = $2", name, holder)

    # --- retention -------------------------------------------------------------------

    async def delete_older_than(
        self, cutoff: datetime, limit: int, *, expiring_state_prefixes: tuple[str, ...] = ()
    ) -> int:
        before = _aware(cutoff)
        async with self.connection() as conn, conn.transaction():
            # Replies first, so the texts they answer are free to go in the same call.
            # SKIP LOCKED: a row another replica is deleting (or updating) is left to it.
            outbound = await conn.fetchval(
                DELETE_FINISHED_OUTBOUND, before, limit, STATUS_WATCH_WINDOW.total_seconds()
            )
            inbound = await conn.fetchval(DELETE_HANDLED_INBOUND, before, limit)
            history = await conn.fetchval(DELETE_OLD_HISTORY, before, limit)
            states = 0
            for prefix in expiring_state_prefixes:
                states += await conn.fetchval(DELETE_EXPIRED_STATES, prefix, before, limit)
        return int(outbound) + int(inbound) + int(history) + states

    # --- plumbing ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection (`PostgresLimiter` shares them); database trouble comes out
        as StoreError."""
        pool = self._pool
        if pool is None:
            raise StoreError("the store is not open")
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                yield conn
        except DATABASE_ERRORS as exc:
            raise StoreError(f"PostgreSQL store {self.url}: {_describe(exc)}") from exc

    async def _claim(
        self,
        lock: str,
        claim: str,
        table: str,
        limit: int,
        lease_seconds: float,
        now: datetime | None = None,
    ) -> list[asyncpg.Record]:
        async with self.connection() as conn, conn.transaction():
            locked = await conn.fetch(lock, now, limit, claim_lock_prefix(self.schema, table))
            if not locked:
                return []
            conversations = [row["conversation"] for row in locked]
            rows = await conn.fetch(claim, now, conversations, lease_seconds, self.replica_id)
        return sorted(rows, key=lambda row: int(row["id"]))

    async def _release(self, table: str, job_id: int, not_before: datetime | None = None) -> None:
        # An outbox row keeps the not_before of its last retry; a text takes the one given.
        later = ", not_before = $2" if table == "inbound" else ""
        values = (not_before,) if table == "inbound" else ()
        async with self.connection() as conn:
            released = await conn.fetchval(
                f"""
                UPDATE {table} SET claimed_until = NULL, claimed_by = NULL{later}
                WHERE id = $1 AND state = 'pending' RETURNING id
                """,
                job_id,
                *values,
            )
        if released is not None and not_before is None:
            self._notifier.poke(table)  # handed back at shutdown: another replica may take it

    async def _update_pending_outbound(
        self, job_id: int, assignments: str, *values: Any, held_by_us: bool = False
    ) -> None:
        """UPDATE one pending outbox row ($1 is its id); LookupError if there is none."""
        fence = ""
        if held_by_us:
            values = (*values, self.replica_id)
            fence = f" AND (claimed_by IS NULL OR claimed_by = ${len(values) + 1})"
        async with self.connection() as conn:
            updated = await conn.fetchval(
                f"""
                UPDATE outbound SET {assignments}
                WHERE id = $1 AND state = 'pending'{fence} RETURNING id
                """,
                job_id,
                *values,
            )
            if updated is None:
                raise await _not_pending(conn, "outbound", job_id)

    async def _notify(self, kinds: list[str]) -> None:
        async with self.connection() as conn:
            await conn.execute(NOTIFY, self.channel, kinds)

    def _server_settings(self) -> dict[str, str]:
        return {
            "search_path": quote_identifier(self.schema),
            "application_name": self.application_name,
        }

    async def _keep_alive(self) -> None:
        """Renew this replica's heartbeat; say so when it cannot be renewed."""
        failing = False
        while True:
            await asyncio.sleep(self.replica_ttl / 5)
            try:
                # Bounded: a heartbeat stuck on a dead connection must not hide that the
                # fence is coming (each attempt counts from its own send time).
                async with asyncio.timeout(self.replica_ttl / 5), self.connection() as conn:
                    await self._heartbeat(conn)
            except (StoreError, TimeoutError) as error:
                if not failing:
                    logger.warning(
                        "cannot renew this replica's heartbeat (%s); it stops sending to "
                        "Twilio %gs after the last renewal, and other replicas take over "
                        "its work %gs later",
                        error or "timed out",
                        self.replica_ttl,
                        self.takeover_grace,
                    )
                failing = True
                continue
            if failing:
                logger.info("PostgreSQL store %s: heartbeat renewed again", self.url)
                failing = False

    async def _listen(self, inbound: Callable[[], None], outbound: Callable[[], None]) -> None:
        """Hold a LISTEN connection, reconnecting when it drops, and call the watchers."""

        def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            (inbound if payload == "inbound" else outbound)()

        delay = 0.5
        warned = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    server_settings=self._server_settings(),
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _conn, event=lost: event.set())
                await conn.add_listener(self.channel, notified)
                delay, warned = 0.5, False
                # Work may have been added while nobody here was listening.
                inbound()
                outbound()
                await lost.wait()
            except DATABASE_ERRORS as exc:
                if not warned:
                    logger.warning(
                        "PostgreSQL store %s: no LISTEN connection (%s); polling until it is back",
                        self.url,
                        _describe(exc),
                    )
                    warned = True
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class _Notifier:
    """Tells the other replicas of new work, with at most one NOTIFY per NOTIFY_INTERVAL.

    Not from inside the transactions that add the work: a transaction that NOTIFYs holds
    a database-wide lock while it commits, so one per webhook would line all commits up
    one behind the other, a disk flush each, where concurrent commits otherwise share one.
    """

    def __init__(self, send: Callable[[list[str]], Awaitable[None]]) -> None:
        self._send = send
        self._pending: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def poke(self, kind: str) -> None:
        """`kind` ("inbound" or "outbound") has new work, committed already."""
        self._pending.add(kind)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self) -> None:
        """Send what is pending (at close: work handed back must be heard of)."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=5)

    async def _run(self) -> None:
        while self._pending:
            kinds = sorted(self._pending)
            self._pending.clear()
            try:
                await self._send(kinds)
            except StoreError as error:
                # The others poll as well: they find the work a little later.
                logger.debug("could not NOTIFY other replicas: %s", error)
            await asyncio.sleep(NOTIFY_INTERVAL)


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except DATABASE_ERRORS:
        pool.terminate()


async def _not_pending(
    conn: PoolConnectionProxy[asyncpg.Record], table: str, job_id: int
) -> LookupError:
    row = await conn.fetchrow(f"SELECT state FROM {table} WHERE id = $1", job_id)
    if row is None:
        return LookupError(f"no {table} job {job_id}")
    if row["state"] != "pending":
        return LookupError(f"{table} job {job_id} is {row['state']}, no longer pending")
    return LookupError(f"{table} job {job_id} has been claimed by another replica since")


async def _get_record(
    conn: PoolConnectionProxy[asyncpg.Record], column: str, value: object
) -> OutboundRecord | None:
    row = await conn.fetchrow(f"SELECT {RECORD_COLUMNS} FROM outbound WHERE {column} = $1", value)
    return None if row is None else read_row(OutboundRecord, row, _as_is)


def _as_is(moment: datetime) -> datetime:
    """asyncpg reads timestamptz as an aware datetime already."""
    return moment


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give it a timezone: {moment!r}")
    return moment
