"""Conversation history rebuilt from Twilio: List Messages both ways, merged, cached.

Twilio holds every message to and from a number, those sent before the adapter ran or by
other systems included, so it is the source of truth. A conversation is one of our
numbers and one person's; its messages are the union of two lists (From=person&To=ours
and From=ours&To=person), walked concurrently and cached in the store, which keys them
by SID (so a message seen twice is kept once, with its newest status) and orders them by
date_sent, or date_created while not yet sent.

    full sync     both lists, every page (PageSize 1000), newest first.
    incremental   both lists with `DateSent>` the day before the last sync (Twilio filters
                  by whole GMT days, so a day of overlap), each walked only until a page
                  reaches messages older than the last sync: one request per list when
                  little is new. Plus the newest page of our messages with no date filter,
                  since a message not yet sent has no date_sent and no DateSent filter
                  matches it; plus Get Message for cached messages whose status was not
                  final and that none of those lists showed.
    shallow       what a bot's `ctx.history(limit)` needs from a conversation never synced:
                  the newest page of each list, not years of texts. When both pages come
                  back short they hold everything, and the conversation counts as synced.

Every REST request runs inside the channel's rate limiter, so history shares Twilio's
budget with the sender instead of spending it behind its back. A request Twilio answers
with 429 is tried again after the limiter's pause (`slow_down`, Retry-After when Twilio
gives one), a 5xx after a backoff of our own; each up to MAX_ATTEMPTS times, and only the
page that failed is fetched again. A sync streams: each page goes to the cache as it
comes, and a full sync keeps no list of the SIDs it has seen, so its memory does not grow
with the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

from adapter.bot.context import HistoryProvider
from adapter.bot.history import Direction, HistoryMessage
from adapter.ratelimit import Limiter
from adapter.store.base import STATUS_WATCH_WINDOW, HistoryEntry, Store
from adapter.twilio.addresses import is_address
from adapter.twilio.client import MAX_PAGE_SIZE, PageRequest, TwilioClient
from adapter.twilio.errors import (
    TwilioError,
    TwilioRateLimited,
    TwilioRequestRejected,
    TwilioServerError,
)
from adapter.twilio.messages import ConversationKey, InboundMessage
from adapter.twilio.resources import MessageResource

logger = logging.getLogger("adapter.history.service")

T = TypeVar("T")
SyncKind = Literal["full", "incremental", "shallow"]

# DateSent filters whole GMT days; a day of overlap also covers a clock that is off.
DATE_FILTER_OVERLAP = timedelta(days=1)
# An incremental walk stops at messages this much older than the last sync: what Twilio
# lists can lag behind what it has, and our clock behind Twilio's.
WALK_MARGIN = timedelta(minutes=15)
# Our messages not yet sent sort at the top of an unfiltered list; this many are looked at.
UNSENT_PAGE_SIZE = 50
# Get Message calls per sync at most, for cached statuses no list refreshed.
MAX_STATUS_REFRESH = 25
# A shallow fetch asks for at least this many, so a short conversation comes back whole.
SHALLOW_PAGE_SIZE = 100
# Tries of one request Twilio answers with 429 or 5xx, before the sync gives up (what was
# cached stays, and the next sync goes on from the last one that finished).
MAX_ATTEMPTS = 6
# The wait before trying again after a 5xx: doubles each time, up to the cap.
SERVER_ERROR_BACKOFF = 0.5
MAX_SERVER_ERROR_BACKOFF = 8.0


def history_message(entry: HistoryEntry) -> HistoryMessage:
    """A cached entry as `ctx.history()` shows it."""
    key = ConversationKey.parse(entry.conversation)
    inbound = entry.direction == "inbound"
    sender, recipient = (key.person, key.ours) if inbound else (key.ours, key.person)
    return HistoryMessage(
        sid=entry.sid,
        direction="inbound" if inbound else "outbound",
        from_=_text_or(entry.payload.get("from"), sender),
        to=_text_or(entry.payload.get("to"), recipient),
        body=entry.body,
        status=entry.status,
        at=entry.at,
        num_media=entry.num_media,
        num_segments=entry.num_segments,
        error_code=entry.error_code,
    )


@dataclass(frozen=True)
class Cursor:
    """Where a page of history ends: the next page holds the messages before it."""

    at: datetime
    sid: str

    def __str__(self) -> str:
        return f"{self.at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}~{self.sid}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """A cursor from a `next` link (`<time>~<sid>`), or an ISO 8601 time alone."""
        moment, _, sid = text.strip().partition("~")
        try:
            at = datetime.fromisoformat(moment)
        except ValueError:
            raise ValueError(
                f"before {text!r} is neither an ISO 8601 time nor a cursor from a `next` link"
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        # A bare time means "strictly before it": an empty SID sorts before every SID.
        return cls(at=at.astimezone(UTC), sid=sid)


@dataclass(frozen=True)
class SyncProgress:
    pages: int
    messages: int  # distinct messages fetched so far


@dataclass(frozen=True)
class SyncReport:
    kind: SyncKind
    requests: int  # REST requests made to Twilio
    pages: int
    messages: int  # distinct messages fetched
    refreshed: int  # statuses asked for one by one (Get Message)


ProgressCallback = Callable[[SyncProgress], None]


@dataclass
class _Tally:
    progress: ProgressCallback | None
    pages: int = 0  # one successful List request each
    retries: int = 0  # requests tried again after a 429 or a 5xx
    refreshed: int = 0  # one Get Message request each
    messages: int = 0  # distinct messages fetched
    # The SIDs the lists showed, kept only by an incremental sync (a few pages): its
    # status refresh skips those. A full sync would hold every SID of the conversation.
    seen: set[str] | None = None

    def page(self, messages: list[MessageResource], previous: set[str]) -> None:
        """Count a page; `previous` holds the SIDs of the page before it in the same list,
        the only one a message can repeat from (Twilio pages by position)."""
        self.pages += 1
        sids = {message.sid for message in messages}
        if self.seen is not None:
            self.messages += len(sids - self.seen)
            self.seen |= sids
        else:
            self.messages += len(sids - previous)
        if self.progress is not None:
            self.progress(SyncProgress(pages=self.pages, messages=self.messages))

    def report(self, kind: SyncKind) -> SyncReport:
        requests = self.pages + self.refreshed + self.retries
        return SyncReport(kind, requests, self.pages, self.messages, self.refreshed)


def check_address(value: str, what: str) -> str:
    """`value` if it is an address Twilio lists by; ValueError saying why otherwise."""
    if not is_address(value):
        raise ValueError(
            f"{what} {value!r} is not an E.164 number such as +15551234567 "
            "(or whatsapp:+15551234567)"
        )
    return value


def conversation_of(ours: str, person: str) -> ConversationKey:
    """The conversation between our number and a person, both checked."""
    check_address(person, "the person's number")
    check_address(ours, "our number")
    if ours.startswith("whatsapp:") != person.startswith("whatsapp:"):
        raise ValueError("our number and the person's must both be whatsapp: or both not")
    return ConversationKey(ours=ours, person=person)


def default_our_number(route_keys: Iterable[str], person: str) -> str:
    """Our number in a conversation with `person` when the caller did not say: the one
    number the route table knows (on the person's channel, SMS or WhatsApp). Guessing
    among several would show one conversation as if it were the whole story."""
    numbers = sorted({key.removeprefix("whatsapp:") for key in route_keys if is_address(key)})
    if len(numbers) != 1:
        known = f"the routes name {', '.join(numbers)}" if numbers else "no route names a number"
        raise ValueError(f"say which of our numbers the conversation is with ({known})")
    channel = "whatsapp:" if person.startswith("whatsapp:") else ""
    return channel + numbers[0]


def conversation_with(person: str, ours: str | None, route_keys: Iterable[str]) -> ConversationKey:
    """The conversation between `person` and `ours`, or, when `ours` is not given, the one
    number the routes name (see `default_our_number`); ValueError saying why otherwise."""
    return conversation_of(ours or default_our_number(route_keys, person), person)


class HistoryService:
    """Conversation histories from Twilio, cached in the store."""

    def __init__(
        self,
        store: Store,
        client: TwilioClient,
        limiter: Limiter,
        *,
        page_size: int = MAX_PAGE_SIZE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._client = client
        self._limiter = limiter
        self._page_size = page_size
        self._clock = clock
        self._locks = _KeyedLocks()

    async def sync(
        self, key: ConversationKey, *, progress: ProgressCallback | None = None
    ) -> SyncReport:
        """Bring the cached history of `key` up to date with Twilio: everything the first
        time, what is new afterwards. Raises TwilioError (naming the call) if Twilio fails;
        what was fetched before the failure stays cached."""
        async with self._locks.hold(str(key)):
            started = self._clock()
            synced = await self._store.history_synced_through(str(key))
            tally = _Tally(progress, seen=None if synced is None else set())
            if synced is None:
                await self._full(key, tally)
            else:
                await self._incremental(key, synced, tally)
            await self._store.set_history_synced_through(str(key), started)
            return tally.report("full" if synced is None else "incremental")

    async def read(
        self, key: ConversationKey, *, limit: int, before: datetime | None = None
    ) -> list[HistoryMessage]:
        """The latest `limit` cached messages (before `before`, if given), oldest first."""
        entries = await self._store.read_history(str(key), limit=limit, before=before)
        return [history_message(entry) for entry in entries]

    async def read_page(
        self, key: ConversationKey, *, limit: int, before: Cursor | None = None
    ) -> tuple[list[HistoryMessage], Cursor | None]:
        """A page of the cache, oldest first, and the cursor of the page before it (None
        when this page holds the oldest message).

        Twilio's times have whole seconds, so messages share them; the cursor holds the
        SID too, and the store is asked for up to one page more than needed so that the
        messages of the cursor's second not yet shown are not skipped.
        """
        if before is None:
            fetched = await self.read(key, limit=limit + 1)
        else:
            tick = timedelta(microseconds=1)  # the store's `before` is exclusive
            fetched = await self.read(key, limit=2 * limit + 1, before=before.at + tick)
            fetched = [m for m in fetched if (m.at, m.sid) < (before.at, before.sid)]
        page = fetched[-limit:]
        more = len(fetched) > len(page)
        return page, (Cursor(page[0].at, page[0].sid) if more and page else None)

    async def recent(
        self, key: ConversationKey, limit: int, *, handling: InboundMessage | None = None
    ) -> list[HistoryMessage]:
        """The latest `limit` messages for a bot, oldest first, `handling` (the text being
        handled) among them. If Twilio cannot be reached the cache answers, with a warning
        logged: a bot should still reply when history is a little stale."""
        if handling is not None:
            await self._store.save_history([_entry_from_inbound(key, handling)])
        try:
            synced = await self._store.history_synced_through(str(key))
            if synced is None and limit <= MAX_PAGE_SIZE:
                await self._shallow(key, limit)
            else:
                await self.sync(key)
        except TwilioError as error:
            logger.warning("history of %s answered from the cache: %s", key, error)
        return await self.read(key, limit=limit)

    def provider_for(self, message: InboundMessage) -> HistoryProvider:
        """What the dispatcher gives a bot's Context as its `history_provider`."""
        key = message.conversation

        async def history(limit: int) -> list[Any]:
            return list(await self.recent(key, limit, handling=message))

        return history

    async def account_newest(self, count: int) -> list[MessageResource]:
        """The newest `count` messages of the whole account (at most one page), newest
        first: one List request, inside the rate limiter like every other."""
        first = self._client.first_page(page_size=min(count, MAX_PAGE_SIZE))
        messages, _ = await self._limited(lambda: self._client.list_page(first), _Tally(None))
        return messages

    # --- the three kinds of fetch ----------------------------------------------------

    async def _full(self, key: ConversationKey, tally: _Tally) -> None:
        await _together(
            self._walk(key, "inbound", tally, page_size=self._page_size),
            self._walk(key, "outbound", tally, page_size=self._page_size),
        )

    async def _incremental(self, key: ConversationKey, synced: datetime, tally: _Tally) -> None:
        day = (synced - DATE_FILTER_OVERLAP).astimezone(UTC).date()
        stop = synced - WALK_MARGIN
        size = self._page_size
        await _together(
            self._walk(key, "inbound", tally, page_size=size, since_day=day, stop_before=stop),
            self._walk(key, "outbound", tally, page_size=size, since_day=day, stop_before=stop),
            self._walk(key, "outbound", tally, page_size=UNSENT_PAGE_SIZE, max_pages=1),
        )
        await self._refresh_unfinished(key, tally)

    async def _shallow(self, key: ConversationKey, limit: int) -> None:
        async with self._locks.hold(str(key)):
            if await self._store.history_synced_through(str(key)) is not None:
                return  # a full sync finished while this waited for the lock
            started = self._clock()
            tally = _Tally(None)
            size = min(max(limit, SHALLOW_PAGE_SIZE), MAX_PAGE_SIZE)
            whole = await _together(
                self._walk(key, "inbound", tally, page_size=size, max_pages=1),
                self._walk(key, "outbound", tally, page_size=size, max_pages=1),
            )
            if all(whole):
                await self._store.set_history_synced_through(str(key), started)

    # --- requests ----------------------------------------------------------------------

    async def _walk(
        self,
        key: ConversationKey,
        direction: Direction,
        tally: _Tally,
        *,
        page_size: int,
        since_day: date | None = None,
        stop_before: datetime | None = None,
        max_pages: int | None = None,
    ) -> bool:
        """List one direction newest first, caching each page as it comes. True when the
        walk saw the whole list (it ended on its own rather than at a stop)."""
        sender, recipient = (
            (key.person, key.ours) if direction == "inbound" else (key.ours, key.person)
        )
        request: PageRequest | None = self._client.first_page(
            from_=sender, to=recipient, date_sent_after=since_day, page_size=page_size
        )
        taken = 0
        previous: set[str] = set()
        while request is not None:
            fetch = functools.partial(self._client.list_page, request)
            page, request = await self._limited(fetch, tally)
            taken += 1
            tally.page(page, previous)
            previous = {message.sid for message in page}
            entries = [_entry(key, direction, m) for m in page]
            await self._store.save_history(await self._placed(entries, listed=True))
            if len(page) < page_size:
                return True  # a short page is the last one
            if max_pages is not None and taken >= max_pages:
                return False
            if stop_before is not None and min(message_time(m) for m in page) < stop_before:
                return False
        return True

    async def _refresh_unfinished(self, key: ConversationKey, tally: _Tally) -> None:
        # Twilio stops moving a status after a few days; older ones are left as they are.
        oldest = self._clock() - STATUS_WATCH_WINDOW
        unfinished = await self._store.unfinished_history(str(key), limit=1000)
        seen = tally.seen or set()
        stale = [e for e in unfinished if e.sid not in seen and e.at >= oldest]
        # The newest are the likeliest to have moved since.
        asked = stale[-MAX_STATUS_REFRESH:]
        fetched = await _together(*(self._get(entry.sid, tally) for entry in asked))
        tally.refreshed += len(asked)
        entries = [
            _entry(key, "inbound" if entry.direction == "inbound" else "outbound", message)
            for entry, message in zip(asked, fetched, strict=True)
            if message is not None
        ]
        await self._store.save_history(await self._placed(entries))

    async def _placed(
        self, entries: list[HistoryEntry], *, listed: bool = False
    ) -> list[HistoryEntry]:
        """Entries at the moment they sort by in a transcript.

        Twilio's dates have whole seconds, so a text and its reply often share one. A
        message that went through this adapter takes the sub-second time our own clock
        put on it (a text when it arrived, a reply when the bot's answer to it was
        committed, which is after the text it answers). The others keep Twilio's second,
        spread by Twilio's list order within it when `listed` (a page of one direction,
        newest first). Scheduled messages sort at the time they will be sent: Twilio's
        Message does not say when that is; the outbox does."""
        known = await self._store.adapter_times(
            [entry.sid for entry in entries if entry.status != "scheduled"]
        )
        if listed:
            entries = _spread_by_list_order(entries, skip=known.keys())
        placed = []
        for entry in entries:
            if entry.status == "scheduled" and "send_at" not in entry.payload:
                record = await self._store.find_outbound_by_sid(entry.sid)
                send_at = (record.payload.get("options") or {}).get("send_at") if record else None
                if isinstance(send_at, str):
                    moment = datetime.fromisoformat(send_at)
                    entry = replace(entry, at=moment, payload={**entry.payload, "send_at": send_at})
            elif entry.status != "scheduled" and entry.sid in known:
                entry = replace(entry, at=known[entry.sid])
            placed.append(entry)
        return placed

    async def _get(self, sid: str, tally: _Tally) -> MessageResource | None:
        try:
            return await self._limited(lambda: self._client.get_message(sid), tally)
        except TwilioRequestRejected as error:
            if error.status == 404:
                return None  # deleted at Twilio: the cached copy is all there is
            raise

    async def _limited(self, request: Callable[[], Awaitable[T]], tally: _Tally) -> T:
        """Make `request` inside the rate limiter, trying it again after a 429 (once the
        limiter's pause is over) or a 5xx (after a backoff), up to MAX_ATTEMPTS tries."""
        backoff = SERVER_ERROR_BACKOFF
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                async with self._limiter.slot():
                    return await request()
            except TwilioRateLimited as error:
                if attempt == MAX_ATTEMPTS:
                    raise
                # Every request of the account, sends included, waits out the pause:
                # Twilio's Retry-After when it gave one, the limiter's backoff otherwise.
                self._limiter.slow_down(error.retry_after)
                logger.info("history: %s; trying again after the pause", error)
            except TwilioServerError as error:
                if attempt == MAX_ATTEMPTS:
                    raise
                logger.info("history: %s; trying again in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_SERVER_ERROR_BACKOFF)
            tally.retries += 1
        raise AssertionError("unreachable: the last attempt returns or raises")


def _entry(key: ConversationKey, direction: Direction, message: MessageResource) -> HistoryEntry:
    payload: dict[str, Any] = {}
    send_at = scheduled_time(message)
    if send_at is not None:
        payload["send_at"] = send_at.isoformat()
    return HistoryEntry(
        sid=message.sid,
        conversation=str(key),
        direction=direction,
        status=message.status or None,
        error_code=message.error_code,
        body=message.body,
        num_media=message.num_media,
        num_segments=message.num_segments,
        at=send_at or message_time(message),
        payload={
            **payload,
            "from": message.from_,
            "to": message.to,
            "date_created": _iso(message.date_created),
            "date_sent": _iso(message.date_sent),
            "error_message": message.error_message,
            "messaging_service_sid": message.messaging_service_sid,
        },
    )


def _entry_from_inbound(key: ConversationKey, message: InboundMessage) -> HistoryEntry:
    # Twilio's own view replaces this one (same SID) at the next sync.
    return HistoryEntry(
        sid=message.message_sid,
        conversation=str(key),
        direction="inbound",
        status="received",
        error_code=None,
        body=message.body,
        num_media=message.num_media,
        num_segments=message.num_segments,
        at=message.received_at,
        payload={"from": message.from_, "to": message.to},
    )


def _spread_by_list_order(
    entries: list[HistoryEntry], *, skip: Iterable[str]
) -> list[HistoryEntry]:
    """A page of one direction, newest first, with the messages that share a whole second
    a microsecond apart in the page's order, so that they keep Twilio's order rather than
    their SIDs' (random) one. `skip`: SIDs placed otherwise."""
    skipped = set(skip)
    sharing: dict[datetime, int] = {}
    for entry in entries:
        if entry.sid not in skipped and entry.status != "scheduled":
            sharing[entry.at] = sharing.get(entry.at, 0) + 1
    spread = []
    for entry in entries:
        if entry.sid not in skipped and entry.status != "scheduled":
            sharing[entry.at] -= 1  # the newest gets the largest offset
            offset = timedelta(microseconds=sharing[entry.at])
            entry = replace(entry, at=entry.at + offset)
        spread.append(entry)
    return spread


def message_time(message: MessageResource) -> datetime:
    """Where a message sorts: when it was sent, or created while not yet sent."""
    # A message Twilio sent nothing about the time of (never seen) still needs a place.
    return message.date_sent or message.date_created or datetime.now(UTC)


def scheduled_time(message: MessageResource) -> datetime | None:
    """When a scheduled message will be sent, if the resource says (the emulator's does)."""
    if message.status != "scheduled":
        return None
    text = message.raw.get("send_at")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _text_or(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


async def _together(*work: Coroutine[Any, Any, T]) -> list[T]:
    """Run concurrently; on the first failure cancel the rest and raise that failure."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(item) for item in work]
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


class _KeyedLocks:
    """One lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
