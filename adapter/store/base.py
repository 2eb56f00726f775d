"""The store contract: the durable queue between accept, process and send.

Every stage hands work to the next through the store, never through memory, so that
a crash at any point loses nothing: the webhook commits before it answers Twilio, the
dispatcher commits a bot's replies in the same transaction that marks the text done
(a transactional outbox), and the sender records each attempt before it is made.

The store knows nothing of Twilio or HTTP: payloads are JSON-able dicts it keeps
verbatim, conversations are opaque strings, message ids are opaque strings.

Implementations: `adapter.store.sqlite.SQLiteStore` (one process),
`adapter.store.postgres.store.PostgresStore` (many replicas). `tests/store/test_contract.py`
is the suite every implementation must pass.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from adapter.ratelimit import AccountLimiter, Limiter, Rate

# How long after sending a message's status is still worth asking Twilio about.
STATUS_WATCH_WINDOW = timedelta(days=3)


class StoreError(Exception):
    """The store cannot be used (cannot be opened, is locked, the disk is full...)."""


@dataclass(frozen=True)
class InboundJob:
    """A committed inbound text waiting for (or claimed for) its bot."""

    id: int
    message_id: str
    conversation: str
    payload: dict[str, Any]
    received_at: datetime


@dataclass(frozen=True)
class ReplyDraft:
    """A message to put in the outbox, with the conversation it keeps order in."""

    conversation: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OutboundJob:
    """An outbox row claimed for sending."""

    id: int
    conversation: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int
    # Set when an earlier attempt may have reached Twilio without us learning the
    # outcome (a timeout, a dropped connection, a crash mid-request): the sender must
    # look for the message at Twilio before sending it again.
    in_doubt_since: datetime | None


@dataclass(frozen=True)
class OutboundRecord:
    """What the store knows of one outbox row (for operators, tests and status handlers)."""

    id: int
    conversation: str
    payload: dict[str, Any]
    state: str  # "pending" | "sent" | "failed" | "dead"
    attempts: int
    message_sid: str | None
    twilio_status: str | None
    error_code: int | None
    error_message: str | None
    created_at: datetime


@dataclass(frozen=True)
class StatusChange:
    """What `update_status` did: the row after the update, and whether its status moved.

    `changed` is False for a replayed or repeated status and for one that would move
    backwards: the bots' status handlers run only when it is True."""

    record: OutboundRecord
    changed: bool


@dataclass(frozen=True)
class HistoryEntry:
    """One message of a conversation as Twilio knows it (cached for history)."""

    sid: str
    conversation: str
    direction: str  # "inbound" or "outbound"
    status: str | None
    error_code: int | None
    body: str
    num_media: int
    num_segments: int
    at: datetime  # date_sent, or date_created while not yet sent: the order of a transcript
    payload: dict[str, Any]  # the rest of Twilio's view (from, to, media, dates...)


@dataclass(frozen=True)
class OutboxStats:
    depth: int  # rows not yet sent, failed or dead-lettered
    oldest_pending_at: datetime | None


class Store(abc.ABC):
    """The durable queue. All methods are safe to call concurrently from one event loop."""

    def limiter(self, *, max_concurrency: int, rate: Rate, per_sender_mps: float | None) -> Limiter:
        """The account's limits as this store can keep them: in-process by default (one
        process owns the store); a store shared by replicas keeps them fleet-wide."""
        return AccountLimiter(
            max_concurrency=max_concurrency, rate=rate, per_sender_mps=per_sender_mps
        )

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema; raise StoreError with a clear reason if impossible.

        Claims left by a process that is gone (its leases) become claimable again.
        """

    @abc.abstractmethod
    async def close(self) -> None: ...

    def watch_for_work(self, inbound: Callable[[], None], outbound: Callable[[], None]) -> None:
        """Call `inbound` / `outbound` (on the event loop) whenever another process may
        have added texts / outbox rows, so idle workers wake without polling. Call it
        before `open()`. A store one process owns hears of all work from that process
        already, so by default this does nothing."""
        return None

    # --- inbound -----------------------------------------------------------------

    @abc.abstractmethod
    async def add_inbound(
        self, message_id: str, conversation: str, payload: dict[str, Any], received_at: datetime
    ) -> bool:
        """Commit one inbound text. False (and nothing stored) if `message_id` is known.

        The check is atomic (a unique key): of many concurrent calls with one id,
        exactly one returns True. When this returns, the row is durable.
        """

    @abc.abstractmethod
    async def claim_inbound(self, limit: int, lease_seconds: float) -> list[InboundJob]:
        """Claim up to `limit` pending texts, at most one per conversation.

        Only the oldest pending text of a conversation can be claimed, and only while
        no other text of that conversation is claimed: texts of one conversation are
        handled one at a time, in order of `received_at` (ties: the order they were
        added). So a text found late by inbound catch-up, dated when Twilio received it,
        still goes before the conversation's later texts that are still pending. A claim
        not finished or released within `lease_seconds` may be claimed again.
        """

    @abc.abstractmethod
    async def renew_inbound(self, job_id: int, lease_seconds: float) -> bool:
        """Extend the lease of a text this process claimed and is still handling, to
        `lease_seconds` from now, so a slow handler's text is not claimed again while it
        runs. False (nothing changed) when the text is no longer pending, or is claimed
        by another process (its lease ran out and someone took it)."""

    @abc.abstractmethod
    async def finish_inbound(
        self,
        job_id: int,
        replies: list[ReplyDraft],
        state: tuple[str, dict[str, Any]] | None = None,
        error: str | None = None,
    ) -> list[int]:
        """In one transaction: mark the text handled, add `replies` to the outbox in
        order, and save the conversation state `(conversation, state)` if given.

        `error` records that the bot raised (the text is still done: it is not run
        again). Returns the outbox ids of the replies.
        """

    @abc.abstractmethod
    async def release_inbound(self, job_id: int, not_before: datetime | None = None) -> None:
        """Give a claimed text back unhandled: claimable again at once (shutdown), or
        from `not_before` (its bot asked to handle it later); until then the
        conversation's later texts wait behind it. After a restart (`open`) it may be
        claimable sooner."""

    @abc.abstractmethod
    async def pending_inbound_count(self) -> int: ...

    def claims_safe_until(self) -> float | None:
        """Event-loop time (`loop.time()`) until which the jobs this process has claimed
        cannot be taken over by another process, however it has lost touch with the store;
        None when no other process shares the store's claims. Work with effects outside the
        store (a request to Twilio) must not start past it, nor run beyond it."""
        return None

    @abc.abstractmethod
    async def check_writable(self) -> None:
        """Commit a small write now; StoreError if the store cannot take one (a full
        disk, a lock held elsewhere, a database gone read-only or out of reach). What
        `/readyz` asks, so a replica that could not keep a text is taken out of rotation.
        """

    # --- conversation state ------------------------------------------------------

    @abc.abstractmethod
    async def load_state(self, conversation: str) -> dict[str, Any]:
        """The state last saved for `conversation`, or {}."""

    @abc.abstractmethod
    async def save_state(self, conversation: str, state: dict[str, Any]) -> None:
        """Save `state` for `conversation` outside an inbound turn (a channel's own
        records, such as the Bot Framework bridge's); the last save wins."""

    # --- outbox ------------------------------------------------------------------

    @abc.abstractmethod
    async def enqueue_outbound(self, drafts: list[ReplyDraft]) -> list[int]:
        """Add messages to the outbox outside any inbound turn (proactive sends)."""

    @abc.abstractmethod
    async def claim_outbound(
        self, limit: int, lease_seconds: float, now: datetime
    ) -> list[OutboundJob]:
        """Claim up to `limit` rows due for sending (`not_before <= now`), at most one
        per conversation: the oldest unsent row of a conversation, and only while no
        row of that conversation is claimed, so replies go out in order. A row waiting
        for a retry holds back the later rows of its conversation.
        """

    @abc.abstractmethod
    async def mark_attempt_started(self, job_id: int, at: datetime) -> None:
        """Record, durably, that a send is about to be made. Until `mark_sent`,
        `schedule_retry(..., in_doubt=False)` or `mark_failed`, the row is in doubt:
        a later claim reports `in_doubt_since` = the earliest such `at`."""

    @abc.abstractmethod
    async def mark_sent(self, job_id: int, message_sid: str, twilio_status: str) -> None:
        """Twilio accepted the message: the row is done and keeps its SID."""

    @abc.abstractmethod
    async def schedule_retry(
        self, job_id: int, not_before: datetime, error: str, in_doubt: bool
    ) -> None:
        """Release the claim; the row is claimable again from `not_before`.

        `in_doubt=True` keeps the in-doubt mark (the attempt may have created the
        message); False clears it (Twilio surely did not create the message).
        """

    @abc.abstractmethod
    async def mark_failed(
        self, job_id: int, error_code: int | None, error_message: str, dead: bool
    ) -> None:
        """Give up on the row: state "failed" (a permanent error), or "dead"
        (dead-lettered: out of attempts or too old). Later rows of the conversation
        are no longer held back by it."""

    @abc.abstractmethod
    async def release_outbound(self, job_id: int) -> None:
        """Give a claimed row back without an attempt (shutdown)."""

    @abc.abstractmethod
    async def get_outbound(self, job_id: int) -> OutboundRecord | None: ...

    @abc.abstractmethod
    async def find_outbound_by_sid(self, message_sid: str) -> OutboundRecord | None:
        """The outbox row that Twilio's message `message_sid` was recorded for, if any."""

    @abc.abstractmethod
    async def list_outbound(
        self, state: str | None = None, limit: int = 100, *, twilio_status: str | None = None
    ) -> list[OutboundRecord]:
        """Rows by id, optionally only those in `state` (e.g. "dead" for dead letters)
        and only those whose last Twilio status is `twilio_status` (e.g. "scheduled")."""

    @abc.abstractmethod
    async def outbox_stats(self) -> OutboxStats: ...

    # --- delivery statuses -------------------------------------------------------

    @abc.abstractmethod
    async def update_status(
        self, message_sid: str, status: str, error_code: int | None
    ) -> StatusChange | None:
        """Record a status Twilio reported for a message we sent. Statuses only move
        forward (see STATUS_RANK); a status that would move back is ignored. Returns
        the row (after the update) and whether its status changed, or None if the SID
        is not ours. The check and the change are one step, so of two deliveries of the
        same callback racing each other exactly one sees `changed`."""

    @abc.abstractmethod
    async def unfinished_sent(self, older_than: datetime, limit: int) -> list[OutboundRecord]:
        """Sent rows whose last status is not final and was set (or confirmed: an
        update with the same status counts) before `older_than`, created within the
        last STATUS_WATCH_WINDOW: candidates for a refresh with Get Message. Older rows
        are left alone: Twilio stops updating a message's status after a few days."""

    # --- opt-out -----------------------------------------------------------------

    @abc.abstractmethod
    async def set_opted_out(self, ours: str, person: str, opted_out: bool, reason: str) -> None:
        """Record that `person` opted out of (or back into) texts from `ours` (a number
        or a Messaging Service SID). `reason`: the keyword, or e.g. "error 21610"."""

    @abc.abstractmethod
    async def is_opted_out(self, ours: str, person: str) -> bool: ...

    # --- conversation history cache ------------------------------------------------

    @abc.abstractmethod
    async def save_history(self, entries: list[HistoryEntry]) -> None:
        """Insert or update entries by SID. An entry's status only moves forward (as in
        update_status); its other fields take the newest values."""

    @abc.abstractmethod
    async def read_history(
        self, conversation: str, *, limit: int, before: datetime | None = None
    ) -> list[HistoryEntry]:
        """The latest `limit` entries of `conversation` whose `at` is strictly before
        `before` (if given), returned oldest first; ties broken by SID."""

    @abc.abstractmethod
    async def adapter_times(self, message_sids: list[str]) -> dict[str, datetime]:
        """For the SIDs among `message_sids` that went through this adapter, the moment
        our own clock put on them: when a text was received (the inbound row) or when a
        reply was committed to the outbox (its row's creation). Twilio's dates have
        whole seconds; these have the order in which texts arrived and replies were
        written, which history needs to put a reply after the text it answers."""

    @abc.abstractmethod
    async def unfinished_history(self, conversation: str, limit: int) -> list[HistoryEntry]:
        """Entries of `conversation` whose status is not final, oldest first."""

    @abc.abstractmethod
    async def history_synced_through(self, conversation: str) -> datetime | None:
        """What set_history_synced_through last recorded for `conversation`, or None."""

    @abc.abstractmethod
    async def set_history_synced_through(self, conversation: str, moment: datetime) -> None: ...

    # --- inbound catch-up ----------------------------------------------------------

    @abc.abstractmethod
    async def catchup_watermark(self) -> datetime | None:
        """The moment through which inbound catch-up has looked at Twilio, or None."""

    @abc.abstractmethod
    async def advance_catchup_watermark(self, moment: datetime) -> datetime:
        """Move the watermark forward to `moment`, never back (a slow replica finishing
        an old round must not undo a newer one); returns the watermark after the call."""

    # --- retention -------------------------------------------------------------------

    @abc.abstractmethod
    async def delete_older_than(
        self, cutoff: datetime, limit: int, *, expiring_state_prefixes: tuple[str, ...] = ()
    ) -> int:
        """Delete up to `limit` rows of each kind below that are older than `cutoff`;
        returns how many went (0: nothing older is left). Small batches keep each
        transaction short, so deleting never holds up the texts arriving meanwhile.

        Deleted: handled texts (by when they were handled) that no outbox row still
        refers to; outbox rows that are finished, by when they were created: failed,
        dead, or sent with a final status, or sent and no longer watched for a status
        (older than STATUS_WATCH_WINDOW); history cache entries (by `at`); and saved
        states whose key starts with one of `expiring_state_prefixes` (a channel's own
        records, such as the Bot Framework bridge's) not saved since `cutoff`.

        Never deleted: pending texts and outbox rows, conversation states (other keys),
        opt-outs, the history sync marks, the catch-up watermark and leases. A text once
        deleted is forgotten by the dedup: Twilio stops retrying a webhook long before.
        The ids of deleted rows are never handed out again (a backend may keep its newest
        text and outbox row to see to that).
        """

    # --- leases: one replica at a time -----------------------------------------------

    @abc.abstractmethod
    async def hold_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Take or renew the lease `name` for `holder`, for `seconds` from now.

        True if `holder` holds it now (it was free, had run out, or was already its);
        False, and nothing changed, while another holder's lease runs. Of concurrent
        callers with different holders, at most one gets True.
        """

    @abc.abstractmethod
    async def release_lease(self, name: str, holder: str) -> None:
        """End the lease `name` if `holder` holds it, so another can take it at once."""
