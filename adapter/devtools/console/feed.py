"""The console's live feed: what changed, numbered, for the page's event stream.

Changes are published from wherever they happen (the emulator's state may change on
another thread than the server's) and read by each open stream from where it left off.
Only the latest `capacity` changes are kept: a stream that falls further behind (a seed
of a million messages) is told to reload instead of being fed every change.

Each feed has an epoch, so an event id (`<epoch>-<seq>`) that a reconnecting page sends
back as Last-Event-ID says whether it came from this process or from one that is gone.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

DEFAULT_CAPACITY = 1000


@dataclass(frozen=True)
class FeedEvent:
    seq: int
    kind: str  # "message" or "exchange"
    data: dict[str, Any]


@dataclass(frozen=True)
class Catchup:
    """What a reader missed since its last event: the events, or a gap too large to
    replay (the reader should reload everything)."""

    events: list[FeedEvent]
    gap: bool
    last_seq: int


class LiveFeed:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.epoch = secrets.token_hex(4)
        self._events: deque[FeedEvent] = deque(maxlen=capacity)
        self._seq = 0
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_pending = False

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def seq_of(self, event_id: str | None) -> int | None:
        """The sequence number in an event id of this feed; None for another feed's."""
        epoch, _, seq = (event_id or "").partition("-")
        if epoch != self.epoch or not (seq.isascii() and seq.isdigit()) or len(seq) > 18:
            return None
        return int(seq)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Record a change; safe from any thread."""
        with self._lock:
            self._seq += 1
            self._events.append(FeedEvent(self._seq, kind, data))
            loop = self._loop
            # A burst (a seeded conversation) wakes the readers once, not once per change.
            must_wake = loop is not None and not self._wake_pending
            self._wake_pending = self._wake_pending or must_wake
        if must_wake and loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop is closed: nobody is reading any more
                pass

    def since(self, seq: int) -> Catchup:
        with self._lock:
            last = self._seq
            if seq >= last:
                return Catchup([], gap=False, last_seq=last)
            oldest = self._events[0].seq if self._events else last + 1
            if seq + 1 < oldest:
                return Catchup([], gap=True, last_seq=last)
            return Catchup([e for e in self._events if e.seq > seq], gap=False, last_seq=last)

    async def wait(self, seq: int, timeout: float) -> Catchup:
        """What came after `seq`, waiting up to `timeout` seconds for something to come."""
        self._loop = asyncio.get_running_loop()
        changed = self._changed  # taken before looking, so a wake in between is not lost
        catchup = self.since(seq)
        if catchup.events or catchup.gap:
            return catchup
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            pass
        return self.since(seq)

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
