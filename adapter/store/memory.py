"""The store in this process's memory: for tests and test helpers that need a `Store`
without a file or a server. Nothing is durable: the data dies with the object.

It behaves as `adapter.store.sqlite.SQLiteStore` does, including the choices the
contract leaves open (see that module's docstring): LookupError for finishing or
marking a job that is not pending, releases of such a job do nothing, statuses
missing from STATUS_RANK are ignored, naive datetimes raise ValueError. Payloads and
states are kept as JSON text, so what goes in must be JSON (a failing call changes
nothing) and what comes out is a copy.

Concurrency: no method awaits anything, so each runs to completion once the event
loop starts it: every call is atomic without a lock. (Not for threads.)

Its data outlives `close()`: `open()` on the same object again is a restart, which
ends every lease (the claims of a process that is gone), as SQLite's `open` does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
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
from adapter.store.rows import decode, encode, history_values, moves_forward, read_row
from adapter.twilio.statuses import FINAL_STATUSES

_HISTORY_COLUMNS = tuple(field.name for field in fields(HistoryEntry))


class _Row:
    def __getitem__(self, column: str) -> Any:
        # `read_row` reads a row by column name, as from a database driver.
        return getattr(self, column)


@dataclass
class _Inbound(_Row):
    id: int
    message_id: str
    conversation: str
    payload: str  # JSON
    received_at: datetime
    done: bool = False
    # The lease, or the time a text released for later becomes due.
    claimed_until: datetime | None = None
    error: str | None = None
    finished_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.claimed_until is None or self.claimed_until <= now


@dataclass
class _Outbound(_Row):
    id: int
    conversation: str
    payload: str  # JSON
    created_at: datetime
    state: str = "pending"
    not_before: datetime | None = None
    claimed_until: datetime | None = None
    attempts: int = 0
    in_doubt_since: datetime | None = None
    message_sid: str | None = None
    twilio_status: str | None = None
    status_updated_at: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    inbound_id: int | None = None  # the text this replies to; None for proactive sends

    def due(self, now: datetime) -> bool:
        return all(
            moment is None or moment <= now for moment in (self.claimed_until, self.not_before)
        )


R = TypeVar("R", _Inbound, _Outbound)


class MemoryStore(Store):
    """A `Store` in dicts; see the module docstring."""

    def __init__(self) -> None:
        self._open = False
        self._inbound: dict[int, _Inbound] = {}
        # Ids are never reused, as a database's sequences: not after retention either.
        self._last_inbound_id = self._last_outbound_id = 0
        self._message_ids: set[str] = set()  # every text's, done ones too: the dedup
        self._outbound: dict[int, _Outbound] = {}
        self._outbound_by_sid: dict[str, _Outbound] = {}
        self._states: dict[str, str] = {}
        self._state_saved_at: dict[str, datetime] = {}
        self._opt_outs: dict[tuple[str, str], bool] = {}
        self._history: dict[str, dict[str, Any]] = {}  # by SID, as history_values orders
        self._synced_through: dict[str, datetime] = {}
        self._catchup_watermark: datetime | None = None
        self._leases: dict[str, tuple[str, datetime]] = {}  # name -> (holder, until)

    async def open(self) -> None:
        if self._open:
            raise RuntimeError("the store is already open")
        # A restart: the leases still held belong to a process that is gone.
        for text in self._inbound.values():
            text.claimed_until = None
        for row in self._outbound.values():
            row.claimed_until = None
        self._open = True

    async def close(self) -> None:
        self._open = False

    # --- inbound -----------------------------------------------------------------

    async def add_inbound(
        self, message_id: str, conversation: str, payload: dict[str, Any], received_at: datetime
    ) -> bool:
        self._check_open()
        row = _Inbound(0, message_id, conversation, encode(payload), _utc(received_at))
        if message_id in self._message_ids:
            return False
        self._last_inbound_id += 1
        row.id = self._last_inbound_id
        self._inbound[row.id] = row
        self._message_ids.add(message_id)
        return True

    async def claim_inbound(self, limit: int, lease_seconds: float) -> list[InboundJob]:
        self._check_open()
        now = datetime.now(UTC)
        # A conversation's texts go in order of receipt: one caught up late can be the
        # oldest while a later one is claimed, so a claimed row holds back the rest too.
        pending = sorted(
            (row for row in self._inbound.values() if not row.done),
            key=lambda row: (row.received_at, row.id),
        )
        busy = {row.conversation for row in pending if not row.due(now)}
        heads = (row for row in pending if row.conversation not in busy)
        claimed = _claim_heads(heads, limit, now, now + timedelta(seconds=lease_seconds))
        return [read_row(InboundJob, row, _as_is) for row in claimed]

    async def renew_inbound(self, job_id: int, lease_seconds: float) -> bool:
        self._check_open()
        row = self._inbound.get(job_id)
        if row is None or row.done or row.claimed_until is None:
            return False
        row.claimed_until = datetime.now(UTC) + timedelta(seconds=lease_seconds)
        return True

    async def finish_inbound(
        self,
        job_id: int,
        replies: list[ReplyDraft],
        state: tuple[str, dict[str, Any]] | None = None,
        error: str | None = None,
    ) -> list[int]:
        self._check_open()
        # Encoded first so a payload that is not JSON fails before anything changes.
        drafts = [(reply.conversation, encode(reply.payload)) for reply in replies]
        saved_state = None if state is None else (state[0], encode(state[1]))
        row = self._inbound.get(job_id)
        if row is None or row.done:
            raise _not_pending("inbound", job_id, None if row is None else "done")
        row.done, row.claimed_until, row.error = True, None, error
        row.finished_at = datetime.now(UTC)
        if saved_state is not None:
            self._save_state(*saved_state)
        return self._add_outbound(drafts, inbound_id=job_id)

    async def release_inbound(self, job_id: int, not_before: datetime | None = None) -> None:
        self._check_open()
        until = None if not_before is None else _utc(not_before)
        row = self._inbound.get(job_id)
        if row is not None and not row.done:
            # A lease that ends at `not_before` is "claimable from then, and the
            # conversation's later texts wait": claims already work that way.
            row.claimed_until = until

    async def pending_inbound_count(self) -> int:
        self._check_open()
        return sum(not row.done for row in self._inbound.values())

    async def check_writable(self) -> None:
        self._check_open()

    # --- conversation state ------------------------------------------------------

    async def load_state(self, conversation: str) -> dict[str, Any]:
        self._check_open()
        saved = self._states.get(conversation)
        return {} if saved is None else decode(saved)

    async def save_state(self, conversation: str, state: dict[str, Any]) -> None:
        self._check_open()
        self._save_state(conversation, encode(state))

    def _save_state(self, conversation: str, encoded: str) -> None:
        self._states[conversation] = encoded
        self._state_saved_at[conversation] = datetime.now(UTC)

    # --- outbox ------------------------------------------------------------------

    async def enqueue_outbound(self, drafts: list[ReplyDraft]) -> list[int]:
        self._check_open()
        return self._add_outbound([(draft.conversation, encode(draft.payload)) for draft in drafts])

    async def claim_outbound(
        self, limit: int, lease_seconds: float, now: datetime
    ) -> list[OutboundJob]:
        self._check_open()
        at = _utc(now)
        pending = (row for row in self._outbound.values() if row.state == "pending")
        claimed = _claim_heads(pending, limit, at, at + timedelta(seconds=lease_seconds))
        return [read_row(OutboundJob, row, _as_is) for row in claimed]

    async def mark_attempt_started(self, job_id: int, at: datetime) -> None:
        moment = _utc(at)
        row = self._pending_outbound(job_id)
        row.attempts += 1
        if row.in_doubt_since is None:  # the earliest attempt: the doubt began then
            row.in_doubt_since = moment

    async def mark_sent(self, job_id: int, message_sid: str, twilio_status: str) -> None:
        row = self._pending_outbound(job_id)
        if message_sid in self._outbound_by_sid:
            raise StoreError(f"memory store: message SID {message_sid} is already recorded")
        row.state, row.claimed_until, row.in_doubt_since = "sent", None, None
        row.message_sid, row.twilio_status = message_sid, twilio_status
        row.status_updated_at = datetime.now(UTC)
        row.error_code = row.error_message = None
        self._outbound_by_sid[message_sid] = row

    async def schedule_retry(
        self, job_id: int, not_before: datetime, error: str, in_doubt: bool
    ) -> None:
        moment = _utc(not_before)
        row = self._pending_outbound(job_id)
        row.claimed_until, row.not_before, row.error_message = None, moment, error
        if not in_doubt:
            row.in_doubt_since = None

    async def mark_failed(
        self, job_id: int, error_code: int | None, error_message: str, dead: bool
    ) -> None:
        row = self._pending_outbound(job_id)
        row.state = "dead" if dead else "failed"
        row.claimed_until = row.in_doubt_since = None
        row.error_code, row.error_message = error_code, error_message

    async def release_outbound(self, job_id: int) -> None:
        self._check_open()
        row = self._outbound.get(job_id)
        if row is not None and row.state == "pending":
            row.claimed_until = None

    async def get_outbound(self, job_id: int) -> OutboundRecord | None:
        self._check_open()
        row = self._outbound.get(job_id)
        return None if row is None else _record(row)

    async def find_outbound_by_sid(self, message_sid: str) -> OutboundRecord | None:
        self._check_open()
        row = self._outbound_by_sid.get(message_sid)
        return None if row is None else _record(row)

    async def list_outbound(
        self, state: str | None = None, limit: int = 100, *, twilio_status: str | None = None
    ) -> list[OutboundRecord]:
        self._check_open()
        rows = [
            row
            for row in self._outbound.values()
            if (state is None or row.state == state)
            and (twilio_status is None or row.twilio_status == twilio_status)
        ]
        return [_record(row) for row in rows[: max(limit, 0)]]

    async def outbox_stats(self) -> OutboxStats:
        self._check_open()
        pending = [row.created_at for row in self._outbound.values() if row.state == "pending"]
        return OutboxStats(depth=len(pending), oldest_pending_at=min(pending, default=None))

    # --- delivery statuses -------------------------------------------------------

    async def update_status(
        self, message_sid: str, status: str, error_code: int | None
    ) -> StatusChange | None:
        self._check_open()
        row = self._outbound_by_sid.get(message_sid)
        if row is None:
            return None
        changed = False
        if row.twilio_status == status:
            # A refresh confirming the status: ask again only after another wait.
            row.status_updated_at = datetime.now(UTC)
        elif moves_forward(row.twilio_status, status):
            row.twilio_status, row.status_updated_at = status, datetime.now(UTC)
            if error_code is not None:
                row.error_code = error_code
            changed = True
        return StatusChange(_record(row), changed)

    async def unfinished_sent(self, older_than: datetime, limit: int) -> list[OutboundRecord]:
        self._check_open()
        before = _utc(older_than)
        watched_since = datetime.now(UTC) - STATUS_WATCH_WINDOW
        rows = [
            row
            for row in self._outbound.values()
            if row.state == "sent"
            and row.twilio_status not in FINAL_STATUSES
            and row.status_updated_at is not None
            and row.status_updated_at < before
            and row.created_at >= watched_since
        ]
        rows.sort(key=lambda row: (row.status_updated_at, row.id))
        return [_record(row) for row in rows[: max(limit, 0)]]

    # --- opt-out -----------------------------------------------------------------

    async def set_opted_out(self, ours: str, person: str, opted_out: bool, reason: str) -> None:
        self._check_open()
        self._opt_outs[ours, person] = opted_out

    async def is_opted_out(self, ours: str, person: str) -> bool:
        self._check_open()
        return self._opt_outs.get((ours, person), False)

    # --- conversation history cache ------------------------------------------------

    async def save_history(self, entries: list[HistoryEntry]) -> None:
        self._check_open()
        # All encoded first: an entry that is not JSON fails before anything changes.
        rows: list[dict[str, Any]] = [
            dict(zip(_HISTORY_COLUMNS, history_values(e, _utc(e.at)), strict=True)) for e in entries
        ]
        for row in rows:
            kept = self._history.get(row["sid"])
            if kept is not None:
                # As rows.save_history_sql: the status only moves forward (but an entry
                # without one, or a view without one, takes the one given); a known
                # error code stays; the other fields take the newest values.
                new, old = row["status"], kept["status"]
                if not (new is None or old is None or moves_forward(old, new)):
                    row["status"] = old
                if row["error_code"] is None:
                    row["error_code"] = kept["error_code"]
            self._history[row["sid"]] = row

    async def read_history(
        self, conversation: str, *, limit: int, before: datetime | None = None
    ) -> list[HistoryEntry]:
        self._check_open()
        until = None if before is None else _utc(before)
        rows = sorted(
            (
                row
                for row in self._history.values()
                if row["conversation"] == conversation and (until is None or row["at"] < until)
            ),
            key=lambda row: (row["at"], row["sid"]),
        )
        latest = rows[len(rows) - limit :] if limit > 0 else []
        return [read_row(HistoryEntry, row, _as_is) for row in latest]

    async def adapter_times(self, message_sids: list[str]) -> dict[str, datetime]:
        self._check_open()
        wanted = set(message_sids)
        times = {row.message_id: row.received_at for row in self._inbound.values()}
        found = {sid: at for sid, at in times.items() if sid in wanted}
        for sid in wanted:
            row = self._outbound_by_sid.get(sid)
            if row is not None:
                found[sid] = row.created_at
        return found

    async def unfinished_history(self, conversation: str, limit: int) -> list[HistoryEntry]:
        self._check_open()
        rows = sorted(
            (
                row
                for row in self._history.values()
                if row["conversation"] == conversation and row["status"] not in FINAL_STATUSES
            ),
            key=lambda row: (row["at"], row["sid"]),
        )
        return [read_row(HistoryEntry, row, _as_is) for row in rows[: max(limit, 0)]]

    async def history_synced_through(self, conversation: str) -> datetime | None:
        self._check_open()
        return self._synced_through.get(conversation)

    async def set_history_synced_through(self, conversation: str, moment: datetime) -> None:
        self._check_open()
        self._synced_through[conversation] = _utc(moment)

    # --- inbound catch-up ----------------------------------------------------------

    async def catchup_watermark(self) -> datetime | None:
        self._check_open()
        return self._catchup_watermark

    async def advance_catchup_watermark(self, moment: datetime) -> datetime:
        self._check_open()
        moment = _utc(moment)
        if self._catchup_watermark is None or moment > self._catchup_watermark:
            self._catchup_watermark = moment
        return self._catchup_watermark

    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        self._check_open()
        now = datetime.now(UTC)
        current = self._leases.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._leases[name] = (holder, now + timedelta(seconds=seconds))
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        self._check_open()
        current = self._leases.get(name)
        if current is not None and current[0] == holder:
            del self._leases[name]

    # --- retention -------------------------------------------------------------------

    async def delete_older_than(
        self, cutoff: datetime, limit: int, *, expiring_state_prefixes: tuple[str, ...] = ()
    ) -> int:
        self._check_open()
        before = _utc(cutoff)
        unwatched_before = min(before, datetime.now(UTC) - STATUS_WATCH_WINDOW)
        finished = [
            row
            for row in self._outbound.values()
            if row.state in ("failed", "dead", "sent")
            and row.created_at < before
            and (
                row.state != "sent"
                or row.twilio_status in FINAL_STATUSES
                or row.created_at < unwatched_before
            )
        ][:limit]
        for row in finished:
            del self._outbound[row.id]
            if row.message_sid is not None:
                self._outbound_by_sid.pop(row.message_sid, None)
        answered = {row.inbound_id for row in self._outbound.values()}
        handled = [
            text
            for text in self._inbound.values()
            if text.done
            and text.finished_at is not None
            and text.finished_at < before
            and text.id not in answered
        ][:limit]
        for text in handled:
            del self._inbound[text.id]
            self._message_ids.discard(text.message_id)
        old_history = [sid for sid, row in self._history.items() if row["at"] < before][:limit]
        for sid in old_history:
            del self._history[sid]
        expired = [
            key
            for key, saved_at in self._state_saved_at.items()
            if key.startswith(expiring_state_prefixes) and saved_at < before
        ][:limit]
        for key in expired:
            del self._states[key], self._state_saved_at[key]
        return len(finished) + len(handled) + len(old_history) + len(expired)

    # --- plumbing ----------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise StoreError("the store is not open")

    def _add_outbound(
        self, drafts: list[tuple[str, str]], inbound_id: int | None = None
    ) -> list[int]:
        now = datetime.now(UTC)
        ids = []
        for conversation, payload in drafts:
            self._last_outbound_id += 1
            row = _Outbound(
                self._last_outbound_id, conversation, payload, now, inbound_id=inbound_id
            )
            self._outbound[row.id] = row
            ids.append(row.id)
        return ids

    def _pending_outbound(self, job_id: int) -> _Outbound:
        """The pending outbox row `job_id`; LookupError if there is none."""
        self._check_open()
        row = self._outbound.get(job_id)
        if row is None or row.state != "pending":
            raise _not_pending("outbound", job_id, None if row is None else row.state)
        return row


def _claim_heads(pending: Iterable[R], limit: int, now: datetime, lease_until: datetime) -> list[R]:
    """Claim up to `limit` of the `pending` rows (in id order): the oldest row of each
    conversation, if it is due. A row claimed, or waiting for its time, holds back the
    rest of its conversation, so each conversation goes one row at a time, in order."""
    claimed: list[R] = []
    seen: set[str] = set()
    for row in pending:
        if len(claimed) >= limit:
            break
        if row.conversation in seen:
            continue
        seen.add(row.conversation)
        if row.due(now):
            row.claimed_until = lease_until
            claimed.append(row)
    return claimed


def _record(row: _Outbound) -> OutboundRecord:
    return read_row(OutboundRecord, row, _as_is)


def _not_pending(table: str, job_id: int, state: str | None) -> LookupError:
    if state is None:
        return LookupError(f"no {table} job {job_id}")
    return LookupError(f"{table} job {job_id} is {state}, no longer pending")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime is ambiguous, give it a timezone: {moment!r}")
    return moment.astimezone(UTC)


def _as_is(moment: datetime) -> datetime:
    return moment  # times are kept as aware UTC datetimes already
