"""The emulated account's memory: every message, inbound and outbound, in one place.

Records are immutable; a change stores a new version under the same SID, so a reader
always holds a consistent snapshot. A lock guards the dict because tests read the state
from their own thread while uvicorn serves the emulator from another; it is never held
across an await. The state also owns the emulator's runtime: the one lazily created
HTTP client for webhooks and callbacks, and the background tasks that post them, both
released by `aclose()` (the emulator has no lifespan of its own, so it can be mounted).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import threading
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from adapter.devtools.emulator.hosted_media import MediaLibrary
from adapter.devtools.emulator.opt_outs import OptOutList
from adapter.segments import count_segments
from adapter.twilio.messages import Media

logger = logging.getLogger("adapter.devtools.emulator")

INBOUND = "inbound"
OUTBOUND_API = "outbound-api"

# Twilio gives up on a webhook after 15 s; so does the emulator.
WEBHOOK_TIMEOUT_SECONDS = 15.0
# Status callbacks posted at once; beyond this they wait their turn (see `posting`).
MAX_CONCURRENT_POSTS = 16
# Seeded conversations spread over this span unless told otherwise, so day filters
# (DateSent) have several days to work on.
DEFAULT_SEED_SPAN = timedelta(days=3)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StoredMessage:
    sid: str
    # Insertion order; breaks ties between messages stamped with the same time.
    seq: int
    direction: str
    from_: str | None
    to: str
    body: str
    status: str
    num_segments: int
    date_created: datetime
    date_updated: datetime
    date_sent: datetime | None = None
    media: tuple[Media, ...] = ()
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    profile_name: str | None = None
    # Send Message's options as the resource shows them (validity_period, send_at...).
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    # How long the message may wait in the queue before it fails with 30036.
    validity_period: int | None = None
    # A scheduled message's time (status "scheduled" until then).
    send_at: datetime | None = None

    @property
    def listed_at(self) -> datetime:
        """The time lists sort and filter by: sent, or created while not yet sent."""
        return self.date_sent or self.date_created


def media_at(url: str, content_type: str | None = None) -> Media:
    """Media at `url`; its type guessed from the URL's extension unless given."""
    if content_type is None:
        guessed, _ = mimetypes.guess_type(urlsplit(url).path)
        content_type = guessed or "application/octet-stream"
    return Media(url=url, content_type=content_type)


def new_sid(with_media: bool) -> str:
    # Twilio names media messages MM..., text-only ones SM...
    return ("MM" if with_media else "SM") + uuid.uuid4().hex


class EmulatorState:
    def __init__(self, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._base_clock = clock
        # Moved forward by `advance` (tests: a scheduled message's time, a validity period).
        self._offset = timedelta(0)
        self._clock_moved: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._messages: dict[str, StoredMessage] = {}
        self._next_seq = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._posting: asyncio.Semaphore | None = None
        # The media people sent (served at Twilio's Media path) and who texted STOP.
        self.media = MediaLibrary()
        self.opt_outs = OptOutList()
        self._listeners: list[Callable[[StoredMessage], None]] = []

    # -- the clock ----------------------------------------------------------------------

    def clock(self) -> datetime:
        """The emulated account's time: the real clock, plus every `advance`."""
        return self._base_clock() + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move the emulator's clock forward by `delta` (never back): scheduled messages
        that come due are sent, and queued ones age. Returns the new time."""
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += delta
        if self._clock_moved is not None:
            self._clock_moved.set()
            self._clock_moved = None
        return self.clock()

    async def sleep_until(self, moment: datetime) -> None:
        """Wait until the emulator's clock reaches `moment` (real time passing, or
        `advance`)."""
        while (remaining := (moment - self.clock()).total_seconds()) > 0:
            if self._clock_moved is None:
                self._clock_moved = asyncio.Event()
            moved = self._clock_moved
            try:
                await asyncio.wait_for(moved.wait(), timeout=remaining)
            except TimeoutError:
                pass

    # -- messages ---------------------------------------------------------------------

    def add_message(
        self,
        *,
        direction: str,
        from_: str | None,
        to: str,
        body: str,
        status: str,
        media: Sequence[Media] = (),
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
        profile_name: str | None = None,
        date_created: datetime | None = None,
        date_sent: datetime | None = None,
        sid: str | None = None,
        options: dict[str, Any] | None = None,
        validity_period: int | None = None,
        num_segments: int | None = None,
        send_at: datetime | None = None,
    ) -> StoredMessage:
        """`sid` is made up unless given (a message whose media were hosted under it)."""
        created = date_created or self.clock()
        with self._lock:
            message = StoredMessage(
                sid=sid or new_sid(bool(media)),
                seq=self._next_seq,
                direction=direction,
                from_=from_,
                to=to,
                body=body,
                status=status,
                num_segments=num_segments if num_segments is not None else count_segments(body),
                date_created=created,
                date_updated=date_sent or created,
                date_sent=date_sent,
                media=tuple(media),
                messaging_service_sid=messaging_service_sid,
                status_callback=status_callback,
                profile_name=profile_name,
                options=dict(options or {}),
                validity_period=validity_period,
                send_at=send_at,
            )
            self._next_seq += 1
            self._messages[message.sid] = message
        self._tell_listeners(message)
        return message

    def get(self, sid: str) -> StoredMessage | None:
        with self._lock:
            return self._messages.get(sid)

    def messages(self) -> list[StoredMessage]:
        """A snapshot of every message, oldest first."""
        with self._lock:
            snapshot = list(self._messages.values())
        return sorted(snapshot, key=lambda m: (m.date_created, m.seq))

    def set_status(
        self,
        sid: str,
        status: str,
        *,
        from_: str | None = None,
        sent: bool = False,
        error: tuple[int, str] | None = None,
    ) -> StoredMessage | None:
        """Move a message to `status`; `sent` stamps date_sent, `from_` assigns a sender.
        None if the message is gone (the state was cleared meanwhile)."""
        now = self.clock()
        with self._lock:
            message = self._messages.get(sid)
            if message is None:
                return None
            message = replace(
                message,
                status=status,
                from_=from_ if from_ is not None else message.from_,
                date_sent=now if sent else message.date_sent,
                date_updated=now,
                error_code=error[0] if error else message.error_code,
                error_message=error[1] if error else message.error_message,
            )
            self._messages[sid] = message
        self._tell_listeners(message)
        return message

    def add_listener(self, listener: Callable[[StoredMessage], None]) -> None:
        """Call `listener` with each new or changed message (the dev console's live view).
        It runs on the thread that made the change, outside the lock, so it must be quick
        and must not call back into the state."""
        self._listeners.append(listener)

    def _tell_listeners(self, message: StoredMessage) -> None:
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:
                logger.exception("emulator listener failed on %s", message.sid)

    def clear(self) -> int:
        """Forget every message; returns how many there were."""
        with self._lock:
            count = len(self._messages)
            self._messages.clear()
        return count

    def seed_conversation(
        self,
        ours: str,
        person: str,
        count: int,
        *,
        start: datetime | None = None,
        interval: timedelta | None = None,
    ) -> list[StoredMessage]:
        """Record a finished conversation of `count` texts, the person writing first and
        the two sides alternating, evenly spaced from `start` (default: spread over the
        three days before now). Outbound texts are already delivered."""
        if count < 0:
            raise ValueError(f"count {count} is negative")
        if count == 0:
            return []
        step = interval if interval is not None else DEFAULT_SEED_SPAN / count
        if step <= timedelta(0):
            raise ValueError("interval must be positive")
        first = start if start is not None else self.clock() - step * count
        if first.tzinfo is None:
            first = first.replace(tzinfo=UTC)
        seeded = []
        for index in range(count):
            moment = first + step * index
            from_person = index % 2 == 0
            seeded.append(
                self.add_message(
                    direction=INBOUND if from_person else OUTBOUND_API,
                    from_=person if from_person else ours,
                    to=ours if from_person else person,
                    body=f"Seeded message {index + 1} of {count}",
                    status="received" if from_person else "delivered",
                    date_created=moment,
                    date_sent=moment,
                )
            )
        return seeded

    # -- runtime ----------------------------------------------------------------------

    @property
    def posting(self) -> asyncio.Semaphore:
        """Held while a status callback is posted. httpx's pool is slow to hand out
        connections to a long queue of waiting requests (quadratic), so the emulator keeps
        that queue short rather than firing every callback at once. (A simulated text's
        webhook is posted while its caller waits, so callers already bound those.)"""
        if self._posting is None:
            self._posting = asyncio.Semaphore(MAX_CONCURRENT_POSTS)
        return self._posting

    def http_client(self) -> httpx.AsyncClient:
        """The client webhooks and status callbacks are posted with, created on first use."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=WEBHOOK_TIMEOUT_SECONDS,
                follow_redirects=False,
                headers={"User-Agent": "TwilioProxy/1.1"},
            )
        return self._http

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` in the background on the running loop; failures are logged."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("emulator task %s failed", task.get_name(), exc_info=task.exception())

    async def settle(self) -> None:
        """Wait until every background delivery (callbacks, ...) has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel background deliveries and close the HTTP client. Safe to call twice."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()
