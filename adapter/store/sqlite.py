"""The store in one SQLite file, written through one connection that commits in groups.

SQLite admits one writer at a time, so every write goes through one connection, which
runs whatever has queued up in ONE transaction (`sqlite_writer.py`): a burst of
webhooks costs one fsync instead of one each, a SAVEPOINT per call keeps a failing call
from failing the others of its batch, and a call's future resolves only after its
batch has committed, so "returned" always means "durable". Point reads go through a
second, read-only connection and do not wait behind writes (`sqlite_reads.py`).

Behaviour the contract leaves open, chosen here and pinned by the contract suite:

- `finish_inbound`, `mark_attempt_started`, `mark_sent`, `schedule_retry` and
  `mark_failed` raise LookupError (and change nothing) for a job that does not exist
  or is no longer pending: finishing a text twice must not send its replies twice.
- `release_inbound` / `release_outbound` of a job that is no longer pending do nothing.
- `update_status` ignores statuses missing from STATUS_RANK.
- Datetimes passed in must be timezone-aware (ValueError otherwise).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

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
from adapter.store.rows import (
    RECORD_COLUMNS,
    decode,
    encode,
    history_values,
    moves_forward,
    read_row,
    save_history_sql,
)
from adapter.store.sqlite_reads import NOT_READ, LoopReader, OptOutCache
from adapter.store.sqlite_writer import GroupCommitWriter
from adapter.twilio.statuses import FINAL_STATUSES

T = TypeVar("T")

logger = logging.getLogger(__name__)

SYNCHRONOUS_MODES = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

# MIGRATIONS[n] takes a file from `PRAGMA user_version` n to n + 1, in one transaction.
# Never edit an entry that has been released: append a new one.
# All times are UTC epoch seconds (REAL); all payloads and states are JSON text.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE inbound (
            id            INTEGER PRIMARY KEY,
            message_id    TEXT NOT NULL UNIQUE,  -- the dedup key
            conversation  TEXT NOT NULL,
            payload       TEXT NOT NULL,
            received_at   REAL NOT NULL,
            state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
            claimed_until REAL,                  -- lease expiry while a dispatcher holds it
            error         TEXT,                  -- what the bot raised, if it did
            finished_at   REAL
        )
        """,
        # Claims read pending texts in order, then look for an older one in the same
        # conversation; done texts pile up forever (the dedup memory) and are skipped.
        "CREATE INDEX inbound_by_state ON inbound (state, id)",
        "CREATE INDEX inbound_pending ON inbound (conversation, id) WHERE state = 'pending'",
        """
        CREATE TABLE outbound (
            id                INTEGER PRIMARY KEY,
            conversation      TEXT NOT NULL,
            payload           TEXT NOT NULL,
            inbound_id        INTEGER REFERENCES inbound (id),  -- NULL for proactive sends
            created_at        REAL NOT NULL,
            state             TEXT NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'sent', 'failed', 'dead')),
            not_before        REAL,              -- retry time; NULL: due at once
            claimed_until     REAL,
            attempts          INTEGER NOT NULL DEFAULT 0,
            in_doubt_since    REAL,
            message_sid       TEXT UNIQUE,
            twilio_status     TEXT,
            status_is_final   INTEGER NOT NULL DEFAULT 0,
            status_updated_at REAL,
            error_code        INTEGER,
            error_message     TEXT
        )
        """,
        "CREATE INDEX outbound_pending ON outbound (conversation, id) WHERE state = 'pending'",
        "CREATE INDEX outbound_by_state ON outbound (state, id)",
        # Sent rows pile up; the status refresher only wants the few still moving.
        """
        CREATE INDEX outbound_unfinished
        ON outbound (state, status_is_final, status_updated_at)
        """,
        """
        CREATE TABLE conversation_state (
            conversation TEXT PRIMARY KEY,
            state        TEXT NOT NULL,
            updated_at   REAL NOT NULL
        )
        """,
    ),
    (
        """
        CREATE TABLE opt_out (
            ours       TEXT NOT NULL,
            person     TEXT NOT NULL,
            opted_out  INTEGER NOT NULL,
            reason     TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (ours, person)
        )
        """,
        """
        CREATE TABLE history (
            sid          TEXT PRIMARY KEY,
            conversation TEXT NOT NULL,
            direction    TEXT NOT NULL,
            status       TEXT,
            error_code   INTEGER,
            body         TEXT NOT NULL,
            num_media    INTEGER NOT NULL,
            num_segments INTEGER NOT NULL,
            at           REAL NOT NULL,
            payload      TEXT NOT NULL
        )
        """,
        "CREATE INDEX history_by_time ON history (conversation, at, sid)",
        """
        CREATE TABLE history_sync (
            conversation   TEXT PRIMARY KEY,
            synced_through REAL NOT NULL
        )
        """,
    ),
    (
        # Inbound catch-up: how far it has looked at Twilio (one row, name 'catchup').
        """
        CREATE TABLE watermark (
            name   TEXT PRIMARY KEY,
            moment REAL NOT NULL
        )
        """,
        """
        CREATE TABLE lease (
            name   TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            until  REAL NOT NULL
        )
        """,
        # Claims order a conversation's pending texts by when Twilio received them.
        "CREATE INDEX inbound_pending_by_time ON inbound (conversation, received_at, id) "
        "WHERE state = 'pending'",
        # One row, rewritten by `check_writable` (/readyz): the proof a commit still works.
        """
        CREATE TABLE health (
            id         INTEGER PRIMARY KEY CHECK (id = 1),
            checked_at REAL NOT NULL
        )
        """,
    ),
    (
        # Retention deletes finished rows in batches: a handled text goes only once no
        # outbox row refers to it (looked up by this index, also used by the foreign
        # key's check), the history cache by age across conversations.
        "CREATE INDEX outbound_by_inbound ON outbound (inbound_id) WHERE inbound_id IS NOT NULL",
        "CREATE INDEX history_by_at ON history (at)",
    ),
)

# Only the oldest pending row of a conversation (by received_at, then id) is a
# candidate, and only if its lease is over and no other row of the conversation is
# claimed: a text caught up late can become the oldest while a later one is claimed.
CLAIM_INBOUND = """
    SELECT id, message_id, conversation, payload, received_at
    FROM inbound AS candidate
    WHERE state = 'pending'
      AND (claimed_until IS NULL OR claimed_until <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM inbound AS other
          WHERE other.conversation = candidate.conversation
            AND other.state = 'pending'
            AND other.id != candidate.id
            AND (other.received_at < candidate.received_at
                 OR (other.received_at = candidate.received_at AND other.id < candidate.id)
                 OR other.claimed_until > :now))
    ORDER BY id
    LIMIT :limit
"""

# As CLAIM_INBOUND; a head row waiting for its retry (not_before) holds back the rest.
CLAIM_OUTBOUND = """
    SELECT id, conversation, payload, created_at, attempts, in_doubt_since
    FROM outbound AS candidate
    WHERE state = 'pending'
      AND (claimed_until IS NULL OR claimed_until <= :now)
      AND (not_before IS NULL OR not_before <= :now)
      AND NOT EXISTS (
          SELECT 1 FROM outbound AS earlier
          WHERE earlier.conversation = candidate.conversation
            AND earlier.state = 'pending'
            AND earlier.id < candidate.id)
    ORDER BY id
    LIMIT :limit
"""

SAVE_HISTORY = save_history_sql("?")


class SQLiteStore(Store):
    """The store in the SQLite file at `path` (created if missing).

    `synchronous="FULL"` makes a commit survive power loss, not only a crash of this
    process; "NORMAL" trades that for speed. `busy_timeout` is how long (seconds) a
    call waits for another process's lock before it fails with StoreError.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}")
        self.path = os.fspath(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._writer = GroupCommitWriter(self._connect, self._error, busy_timeout)
        self._reader = LoopReader()
        self._opt_outs = OptOutCache()

    @property
    def commits(self) -> int:
        """Transactions committed since open: fewer than calls when calls were grouped."""
        return self._writer.commits

    async def open(self) -> None:
        await self._writer.start(name=f"sqlite-store:{self.path}")
        self._reader.open(self.path)  # after the writer has created and migrated the file

    async def close(self) -> None:
        self._reader.close()
        await self._writer.stop()

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """A one-statement read: on this thread's own connection when it can be read
        there without waiting (sqlite_reads.py), otherwise through the writer."""
        value = self._reader.read(work)
        if value is NOT_READ:
            return await self._writer.run(work, single_statement=True)
        return value  # type: ignore[return-value]

    # --- inbound -----------------------------------------------------------------

    async def add_inbound(
        self, message_id: str, conversation: str, payload: dict[str, Any], received_at: datetime
    ) -> bool:
        row = (message_id, conversation, encode(payload), _to_epoch(received_at))

        def insert(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                """
                INSERT INTO inbound (message_id, conversation, payload, received_at)
                VALUES (?, ?, ?, ?)
                ON CONFLICT (message_id) DO NOTHING
                """,
                row,
            )
            return cursor.rowcount == 1

        return await self._writer.run(insert, single_statement=True)

    async def claim_inbound(self, limit: int, lease_seconds: float) -> list[InboundJob]:
        if limit <= 0:
            return []

        def claim(db: sqlite3.Connection) -> list[InboundJob]:
            now = time.time()
            rows = db.execute(CLAIM_INBOUND, {"now": now, "limit": limit}).fetchall()
            db.executemany(
                "UPDATE inbound SET claimed_until = ? WHERE id = ?",
                [(now + lease_seconds, row["id"]) for row in rows],
            )
            return [read_row(InboundJob, row, _from_epoch) for row in rows]

        return await self._writer.run(claim)

    async def renew_inbound(self, job_id: int, lease_seconds: float) -> bool:
        # One process owns the file, so a claimed pending text is this process's claim.
        def renew(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                """
                UPDATE inbound SET claimed_until = ?
                WHERE id = ? AND state = 'pending' AND claimed_until IS NOT NULL
                """,
                (time.time() + lease_seconds, job_id),
            )
            return cursor.rowcount == 1

        return await self._writer.run(renew, single_statement=True)

    async def finish_inbound(
        self,
        job_id: int,
        replies: list[ReplyDraft],
        state: tuple[str, dict[str, Any]] | None = None,
        error: str | None = None,
    ) -> list[int]:
        # Encoded here so a payload that is not JSON fails before anything is written.
        drafts = [(reply.conversation, encode(reply.payload)) for reply in replies]
        saved_state = None if state is None else (state[0], encode(state[1]))

        def finish(db: sqlite3.Connection) -> list[int]:
            now = time.time()
            cursor = db.execute(
                """
                UPDATE inbound SET state = 'done', claimed_until = NULL, error = ?, finished_at = ?
                WHERE id = ? AND state = 'pending'
                """,
                (error, now, job_id),
            )
            if cursor.rowcount == 0:
                raise _not_pending(db, "inbound", job_id)
            ids = _insert_outbound(db, drafts, inbound_id=job_id, now=now)
            if saved_state is not None:
                _save_state(db, *saved_state, now=now)
            return ids

        return await self._writer.run(finish)

    async def release_inbound(self, job_id: int, not_before: datetime | None = None) -> None:
        # A lease that ends at `not_before` is exactly "claimable from then, and the
        # conversation's later texts wait": claims already work that way.
        until = None if not_before is None else _to_epoch(not_before)

        def release(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE inbound SET claimed_until = ? WHERE id = ? AND state = 'pending'",
                (until, job_id),
            )

        await self._writer.run(release)

    async def pending_inbound_count(self) -> int:
        def count(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT count(*) FROM inbound WHERE state = 'pending'").fetchone()
            return int(row[0])

        return await self._writer.run(count)

    async def check_writable(self) -> None:
        def touch(db: sqlite3.Connection) -> None:
            # A real row written and committed (in the writer's next group commit): only
            # a commit finds out that the disk is full or the file has gone read-only.
            db.execute(
                """
                INSERT INTO health (id, checked_at) VALUES (1, ?)
                ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at
                """,
                (time.time(),),
            )

        await self._writer.run(touch)

    # --- conversation state ------------------------------------------------------

    async def load_state(self, conversation: str) -> dict[str, Any]:
        def load(db: sqlite3.Connection) -> dict[str, Any]:
            row = db.execute(
                "SELECT state FROM conversation_state WHERE conversation = ?", (conversation,)
            ).fetchone()
            return {} if row is None else decode(row["state"])

        return await self._read(load)

    async def save_state(self, conversation: str, state: dict[str, Any]) -> None:
        encoded = encode(state)

        def save(db: sqlite3.Connection) -> None:
            _save_state(db, conversation, encoded, now=time.time())

        await self._writer.run(save)

    # --- outbox ------------------------------------------------------------------

    async def enqueue_outbound(self, drafts: list[ReplyDraft]) -> list[int]:
        encoded = [(draft.conversation, encode(draft.payload)) for draft in drafts]
        if not encoded:
            return []

        def enqueue(db: sqlite3.Connection) -> list[int]:
            return _insert_outbound(db, encoded, inbound_id=None, now=time.time())

        return await self._writer.run(enqueue)

    async def claim_outbound(
        self, limit: int, lease_seconds: float, now: datetime
    ) -> list[OutboundJob]:
        if limit <= 0:
            return []
        at = _to_epoch(now)

        def claim(db: sqlite3.Connection) -> list[OutboundJob]:
            rows = db.execute(CLAIM_OUTBOUND, {"now": at, "limit": limit}).fetchall()
            db.executemany(
                "UPDATE outbound SET claimed_until = ? WHERE id = ?",
                [(at + lease_seconds, row["id"]) for row in rows],
            )
            return [read_row(OutboundJob, row, _from_epoch) for row in rows]

        return await self._writer.run(claim)

    async def mark_attempt_started(self, job_id: int, at: datetime) -> None:
        await self._update_pending_outbound(
            job_id,
            # coalesce keeps the earliest attempt: that is when the doubt began.
            "attempts = attempts + 1, in_doubt_since = coalesce(in_doubt_since, :at)",
            at=_to_epoch(at),
        )

    async def mark_sent(self, job_id: int, message_sid: str, twilio_status: str) -> None:
        await self._update_pending_outbound(
            job_id,
            """
            state = 'sent', claimed_until = NULL, in_doubt_since = NULL,
            message_sid = :sid, twilio_status = :status, status_is_final = :final,
            status_updated_at = :now, error_code = NULL, error_message = NULL
            """,
            sid=message_sid,
            status=twilio_status,
            final=twilio_status in FINAL_STATUSES,
        )

    async def schedule_retry(
        self, job_id: int, not_before: datetime, error: str, in_doubt: bool
    ) -> None:
        await self._update_pending_outbound(
            job_id,
            """
            claimed_until = NULL, not_before = :not_before, error_message = :error,
            in_doubt_since = CASE WHEN :in_doubt THEN in_doubt_since END
            """,
            not_before=_to_epoch(not_before),
            error=error,
            in_doubt=in_doubt,
        )

    async def mark_failed(
        self, job_id: int, error_code: int | None, error_message: str, dead: bool
    ) -> None:
        await self._update_pending_outbound(
            job_id,
            """
            state = :state, claimed_until = NULL, in_doubt_since = NULL,
            error_code = :code, error_message = :error
            """,
            state="dead" if dead else "failed",
            code=error_code,
            error=error_message,
        )

    async def release_outbound(self, job_id: int) -> None:
        def release(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbound SET claimed_until = NULL WHERE id = ? AND state = 'pending'",
                (job_id,),
            )

        await self._writer.run(release)

    async def get_outbound(self, job_id: int) -> OutboundRecord | None:
        def get(db: sqlite3.Connection) -> OutboundRecord | None:
            return _get_record(db, "id = ?", job_id)

        return await self._writer.run(get)

    async def find_outbound_by_sid(self, message_sid: str) -> OutboundRecord | None:
        def find(db: sqlite3.Connection) -> OutboundRecord | None:
            return _get_record(db, "message_sid = ?", message_sid)

        return await self._writer.run(find)

    async def list_outbound(
        self, state: str | None = None, limit: int = 100, *, twilio_status: str | None = None
    ) -> list[OutboundRecord]:
        if limit <= 0:
            return []

        def list_rows(db: sqlite3.Connection) -> list[OutboundRecord]:
            # Spelled per filter so that a state filter can use the (state, id) index.
            conditions = []
            if state is not None:
                conditions.append("state = :state")
            if twilio_status is not None:
                conditions.append("twilio_status = :twilio_status")
            where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
            rows = db.execute(
                f"SELECT {RECORD_COLUMNS} FROM outbound {where} ORDER BY id LIMIT :limit",
                {"state": state, "twilio_status": twilio_status, "limit": limit},
            ).fetchall()
            return [read_row(OutboundRecord, row, _from_epoch) for row in rows]

        return await self._writer.run(list_rows)

    async def outbox_stats(self) -> OutboxStats:
        def stats(db: sqlite3.Connection) -> OutboxStats:
            row = db.execute(
                "SELECT count(*), min(created_at) FROM outbound WHERE state = 'pending'"
            ).fetchone()
            return OutboxStats(
                depth=int(row[0]),
                oldest_pending_at=None if row[1] is None else _from_epoch(row[1]),
            )

        return await self._writer.run(stats)

    # --- delivery statuses -------------------------------------------------------

    async def update_status(
        self, message_sid: str, status: str, error_code: int | None
    ) -> StatusChange | None:
        def update(db: sqlite3.Connection) -> StatusChange | None:
            row = db.execute(
                "SELECT id, twilio_status FROM outbound WHERE message_sid = ?", (message_sid,)
            ).fetchone()
            if row is None:
                return None
            changed = False
            if row["twilio_status"] == status:
                # A refresh confirming the status: ask again only after another wait.
                db.execute(
                    "UPDATE outbound SET status_updated_at = ? WHERE id = ?",
                    (time.time(), row["id"]),
                )
            elif moves_forward(row["twilio_status"], status):
                db.execute(
                    """
                    UPDATE outbound
                    SET twilio_status = ?, status_is_final = ?, status_updated_at = ?,
                        error_code = coalesce(?, error_code)
                    WHERE id = ?
                    """,
                    (status, status in FINAL_STATUSES, time.time(), error_code, row["id"]),
                )
                changed = True
            record = _get_record(db, "id = ?", row["id"])
            assert record is not None  # the row was read in this transaction
            return StatusChange(record, changed)

        return await self._writer.run(update)

    async def unfinished_sent(self, older_than: datetime, limit: int) -> list[OutboundRecord]:
        if limit <= 0:
            return []
        before = _to_epoch(older_than)

        def unfinished(db: sqlite3.Connection) -> list[OutboundRecord]:
            rows = db.execute(
                f"""
                SELECT {RECORD_COLUMNS} FROM outbound
                WHERE state = 'sent' AND status_is_final = 0 AND status_updated_at < ?
                  AND created_at >= ?
                ORDER BY status_updated_at, id LIMIT ?
                """,
                (before, time.time() - STATUS_WATCH_WINDOW.total_seconds(), limit),
            ).fetchall()
            return [read_row(OutboundRecord, row, _from_epoch) for row in rows]

        return await self._writer.run(unfinished)

    # --- opt-out -----------------------------------------------------------------

    async def set_opted_out(self, ours: str, person: str, opted_out: bool, reason: str) -> None:
        def save(db: sqlite3.Connection) -> None:
            db.execute(
                """
                INSERT INTO opt_out (ours, person, opted_out, reason, updated_at)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (ours, person) DO UPDATE SET
                    opted_out = excluded.opted_out,
                    reason = excluded.reason,
                    updated_at = excluded.updated_at
                """,
                (ours, person, int(opted_out), reason, time.time()),
            )

        await self._writer.run(save)
        self._opt_outs.written(ours, person, opted_out)

    async def is_opted_out(self, ours: str, person: str) -> bool:
        known = self._opt_outs.get(ours, person)
        if known is not None:
            return known

        def read(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT opted_out FROM opt_out WHERE ours = ? AND person = ?", (ours, person)
            ).fetchone()
            return bool(row is not None and row["opted_out"])

        version = self._opt_outs.version
        opted_out = await self._read(read)
        self._opt_outs.read(ours, person, opted_out, as_of=version)
        return opted_out

    # --- conversation history cache ------------------------------------------------

    async def save_history(self, entries: list[HistoryEntry]) -> None:
        rows = [history_values(entry, _to_epoch(entry.at)) for entry in entries]
        if not rows:
            return

        def save(db: sqlite3.Connection) -> None:
            db.executemany(SAVE_HISTORY, rows)

        await self._writer.run(save)

    async def read_history(
        self, conversation: str, *, limit: int, before: datetime | None = None
    ) -> list[HistoryEntry]:
        if limit <= 0:
            return []
        until = float("inf") if before is None else _to_epoch(before)

        def read(db: sqlite3.Connection) -> list[HistoryEntry]:
            rows = db.execute(
                """
                SELECT * FROM history WHERE conversation = ? AND at < ?
                ORDER BY at DESC, sid DESC LIMIT ?
                """,
                (conversation, until, limit),
            ).fetchall()
            return [read_row(HistoryEntry, row, _from_epoch) for row in reversed(rows)]

        return await self._writer.run(read)

    async def adapter_times(self, message_sids: list[str]) -> dict[str, datetime]:
        sids = sorted(set(message_sids))
        if not sids:
            return {}

        def read(db: sqlite3.Connection) -> dict[str, datetime]:
            found: dict[str, datetime] = {}
            # In chunks: SQLite caps the number of parameters of one statement.
            for start in range(0, len(sids), 500):
                chunk = sids[start : start + 500]
                marks = ", ".join("?" for _ in chunk)
                rows = db.execute(
                    f"""
                    SELECT message_id AS sid, received_at AS at FROM inbound
                    WHERE message_id IN ({marks})
                    UNION ALL
                    SELECT message_sid, created_at FROM outbound WHERE message_sid IN ({marks})
                    """,
                    (*chunk, *chunk),
                ).fetchall()
                found.update((row["sid"], _from_epoch(row["at"])) for row in rows)
            return found

        return await self._writer.run(read)

    async def unfinished_history(self, conversation: str, limit: int) -> list[HistoryEntry]:
        if limit <= 0:
            return []  # SQLite reads LIMIT -1 as "no limit"
        finals = tuple(FINAL_STATUSES)

        def read(db: sqlite3.Connection) -> list[HistoryEntry]:
            marks = ", ".join("?" for _ in finals)
            rows = db.execute(
                f"""
                SELECT * FROM history
                WHERE conversation = ? AND (status IS NULL OR status NOT IN ({marks}))
                ORDER BY at, sid LIMIT ?
                """,
                (conversation, *finals, limit),
            ).fetchall()
            return [read_row(HistoryEntry, row, _from_epoch) for row in rows]

        return await self._writer.run(read)

    async def history_synced_through(self, conversation: str) -> datetime | None:
        def read(db: sqlite3.Connection) -> datetime | None:
            row = db.execute(
                "SELECT synced_through FROM history_sync WHERE conversation = ?", (conversation,)
            ).fetchone()
            return None if row is None else _from_epoch(row["synced_through"])

        return await self._writer.run(read)

    async def set_history_synced_through(self, conversation: str, moment: datetime) -> None:
        at = _to_epoch(moment)

        def save(db: sqlite3.Connection) -> None:
            db.execute(
                """
                INSERT INTO history_sync (conversation, synced_through) VALUES (?, ?)
                ON CONFLICT (conversation) DO UPDATE SET synced_through = excluded.synced_through
                """,
                (conversation, at),
            )

        await self._writer.run(save)

    # --- inbound catch-up ----------------------------------------------------------

    async def catchup_watermark(self) -> datetime | None:
        def read(db: sqlite3.Connection) -> datetime | None:
            row = db.execute("SELECT moment FROM watermark WHERE name = 'catchup'").fetchone()
            return None if row is None else _from_epoch(row["moment"])

        return await self._writer.run(read)

    async def advance_catchup_watermark(self, moment: datetime) -> datetime:
        at = _to_epoch(moment)

        def advance(db: sqlite3.Connection) -> datetime:
            row = db.execute(
                """
                INSERT INTO watermark (name, moment) VALUES ('catchup', ?)
                ON CONFLICT (name) DO UPDATE SET moment = max(moment, excluded.moment)
                RETURNING moment
                """,
                (at,),
            ).fetchone()
            return _from_epoch(row["moment"])

        return await self._writer.run(advance)

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        def hold(db: sqlite3.Connection) -> bool:
            now = time.time()
            row = db.execute(
                """
                INSERT INTO lease (name, holder, until) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                WHERE lease.holder = excluded.holder OR lease.until <= ?
                RETURNING holder
                """,
                (name, holder, now + seconds, now),
            ).fetchone()
            return row is not None

        return await self._writer.run(hold)

    async def release_lease(self, name: str, holder: str) -> None:
        def release(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM lease WHERE name = ? AND holder = ?", (name, holder))

        await self._writer.run(release)

    # --- retention -------------------------------------------------------------------

    async def delete_older_than(
        self, cutoff: datetime, limit: int, *, expiring_state_prefixes: tuple[str, ...] = ()
    ) -> int:
        before = _to_epoch(cutoff)
        unwatched_before = min(before, time.time() - STATUS_WATCH_WINDOW.total_seconds())

        def delete(db: sqlite3.Connection) -> int:
            # The newest text and outbox row always stay: SQLite gives a new row the
            # largest id kept plus one, and an id that once meant a deleted message must
            # not come to mean another (operators and logs quote them).
            # Replies first, so the texts they answer are free to go in the same call.
            deleted = db.execute(
                """
                DELETE FROM outbound WHERE id IN (
                    SELECT id FROM outbound
                    WHERE state IN ('sent', 'failed', 'dead') AND created_at < ?
                      AND (state != 'sent' OR status_is_final OR created_at < ?)
                      AND id < (SELECT max(id) FROM outbound)
                    ORDER BY state, id LIMIT ?
                )
                """,
                (before, unwatched_before, limit),
            ).rowcount
            deleted += db.execute(
                """
                DELETE FROM inbound WHERE id IN (
                    SELECT id FROM inbound
                    WHERE state = 'done' AND finished_at < ?
                      AND id < (SELECT max(id) FROM inbound)
                      AND NOT EXISTS (SELECT 1 FROM outbound WHERE inbound_id = inbound.id)
                    ORDER BY state, id LIMIT ?
                )
                """,
                (before, limit),
            ).rowcount
            deleted += db.execute(
                "DELETE FROM history WHERE sid IN "
                "(SELECT sid FROM history WHERE at < ? ORDER BY at LIMIT ?)",
                (before, limit),
            ).rowcount
            for prefix in expiring_state_prefixes:
                deleted += db.execute(
                    """
                    DELETE FROM conversation_state WHERE conversation IN (
                        SELECT conversation FROM conversation_state
                        WHERE substr(conversation, 1, ?) = ? AND updated_at < ? LIMIT ?
                    )
                    """,
                    (len(prefix), prefix, before, limit),
                ).rowcount
            return deleted

        return await self._writer.run(delete)

    # --- plumbing ----------------------------------------------------------------

    async def _update_pending_outbound(self, job_id: int, assignments: str, **values: Any) -> None:
        """UPDATE one pending outbox row; LookupError if there is none."""

        def update(db: sqlite3.Connection) -> None:
            cursor = db.execute(
                f"UPDATE outbound SET {assignments} WHERE id = :id AND state = 'pending'",
                {**values, "id": job_id, "now": time.time()},
            )
            if cursor.rowcount == 0:  # nothing changed: the lookup below only reads
                raise _not_pending(db, "outbound", job_id)

        await self._writer.run(update, single_statement=True)

    def _connect(self) -> sqlite3.Connection:
        """Open, configure and migrate the file; runs on the writer's commit thread."""
        try:
            # The writer opens it on its commit thread and writes on the event loop's.
            db = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            db.row_factory = sqlite3.Row
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"cannot open the SQLite store {self.path}: WAL mode refused")
            db.execute(f"PRAGMA synchronous = {self._synchronous}")
            db.execute("PRAGMA foreign_keys = ON")
            with _transaction(db):
                self._migrate(db)
                # One process owns the file: leases still held belong to a process
                # that died, and its texts and replies must not wait for them.
                db.execute(
                    "UPDATE inbound SET claimed_until = NULL WHERE claimed_until IS NOT NULL"
                )
                db.execute(
                    "UPDATE outbound SET claimed_until = NULL WHERE claimed_until IS NOT NULL"
                )
        except sqlite3.Error as exc:
            db.close()
            raise self._open_error(exc) from exc
        except BaseException:
            db.close()
            raise
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreError(
                f"cannot open the SQLite store {self.path}: its schema version {version} "
                f"is newer than this sms-adapter knows ({len(MIGRATIONS)})"
            )
        for target, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")

    def _open_error(self, exc: sqlite3.Error) -> StoreError:
        reason = str(exc)
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            reason += f" (directory {directory} does not exist)"
        return StoreError(f"cannot open the SQLite store {self.path}: {reason}")

    def _error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"SQLite store {self.path}: {exc}")


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; rolled back if the body or the COMMIT fails."""
    # IMMEDIATE takes the write lock now, so a busy file fails here, not midway.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        # A failed COMMIT can leave the transaction open; the next BEGIN needs it gone.
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                logger.exception("SQLite store: ROLLBACK failed")
        raise


# --- rows and values ---------------------------------------------------------------


def _insert_outbound(
    db: sqlite3.Connection, drafts: Sequence[tuple[str, str]], inbound_id: int | None, now: float
) -> list[int]:
    ids = []
    for conversation, payload in drafts:
        cursor = db.execute(
            """
            INSERT INTO outbound (conversation, payload, inbound_id, created_at)
            VALUES (?, ?, ?, ?)
            """,
            (conversation, payload, inbound_id, now),
        )
        assert cursor.lastrowid is not None
        ids.append(cursor.lastrowid)
    return ids


def _save_state(db: sqlite3.Connection, conversation: str, state: str, now: float) -> None:
    db.execute(
        """
        INSERT INTO conversation_state (conversation, state, updated_at) VALUES (?, ?, ?)
        ON CONFLICT (conversation) DO UPDATE
        SET state = excluded.state, updated_at = excluded.updated_at
        """,
        (conversation, state, now),
    )


def _get_record(db: sqlite3.Connection, where: str, value: object) -> OutboundRecord | None:
    row = db.execute(f"SELECT {RECORD_COLUMNS} FROM outbound WHERE {where}", (value,)).fetchone()
    return None if row is None else read_row(OutboundRecord, row, _from_epoch)


def _not_pending(db: sqlite3.Connection, table: str, job_id: int) -> LookupError:
    row = db.execute(f"SELECT state FROM {table} WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return LookupError(f"no {table} job {job_id}")
    return LookupError(f"{table} job {job_id} is {row['state']}, no longer pending")


def _to_epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give it a timezone: {moment!r}")
    return moment.timestamp()


def _from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
