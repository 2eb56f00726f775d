"""Keeping our requests to Twilio within the account's limits.

Every request the sender makes to Twilio (sends, and the List/Get calls that
reconcile in-doubt sends) runs inside `Limiter.slot()`. `AccountLimiter` is the
in-process implementation: it admits a request only when all of these allow it:

- concurrency: fewer than `max_concurrency` requests are in flight (Twilio answers
  429 / 20429 when an account has too many concurrent requests);
- the rate, as Twilio counts it: Twilio counts requests when they *arrive*, which is
  some time between our start and its answer (a new connection, a slow upload, a busy
  proxy). So a request holds one of `rate.count` places from its start until its answer
  arrives and for `rate.per_seconds` after that: a new request starts only while fewer
  than `count` are in flight or were answered within the last window. Two requests
  that share a place then arrive at least a window apart whatever the network does, so
  no window at Twilio's side holds more than `count`; and since the window runs from
  the answer, the rate used is `count / (per_seconds + latency)`, nearly all of it
  when a request takes a small part of the window (a sliding log, not a fixed window,
  which would allow twice the count across a window boundary);
- the sender's budget: with `per_sender_mps`, one sender address's starts are evenly
  spaced at that many per second, and its requests hold places in a window of their
  own the same way (`sender_rate`), so no second at Twilio's side holds more than
  its budget (carriers meter long codes per number);
- a 429 pause: after `slow_down()`, nothing new starts until the pause ends.

Requests that are ready to go are admitted first come, first served. A sender over
its budget waits on its own, before joining that queue, so one busy number cannot
hold up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from adapter.durations import parse_duration
from adapter.twilio.errors import TwilioRateLimited

# Twilio answers a request with 429 when the account has too many in flight; its
# documentation gives no number for the threshold (reports put it around 100 per
# account), and the account may be shared with other applications. By Little's law
# 25 concurrent requests sustain the default 20 requests/s even at 1.25 s per
# request (sends normally take a few hundred ms), so the rate limit, not this cap,
# is what paces a healthy system, while staying far below where 429s begin.
DEFAULT_MAX_CONCURRENCY = 25  # setting SMS_ADAPTER_MAX_CONCURRENCY

# Our own pause after a 429 that came without Retry-After: it doubles with each such
# pause and halves with each request that succeeds without a 429 meanwhile.
INITIAL_BACKOFF = 1.0  # seconds
MAX_BACKOFF = 60.0  # seconds


@dataclass(frozen=True)
class Rate:
    """At most `count` requests start in any `per_seconds` seconds."""

    count: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a rate allows at least 1 request, not {self.count}")
        if not self.per_seconds > 0:
            raise ValueError(f"a rate's window must be positive, not {self.per_seconds}s")

    def __str__(self) -> str:
        return f"{self.count}/{self.per_seconds:g}s"


DEFAULT_RATE = Rate(1200, 60.0)  # setting SMS_ADAPTER_RATE_LIMIT


def sender_rate(per_sender_mps: float) -> Rate:
    """The window one sender's requests hold places in: as many places as whole
    messages per second it may send (at least one), over the time they take at its
    pace: 1/s is one place per second, 10/s ten per second, 0.5/s one per two seconds."""
    count = max(1, int(per_sender_mps))
    return Rate(count, count / per_sender_mps)


class PlacesInWindow:
    """The places of one `Rate` as Twilio counts them: a request holds its place from
    its start until its answer arrives, and for the window after that."""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.in_flight = 0
        # When each answered request's place frees (answer + per_seconds), in order:
        # answers are stamped by one monotonic clock, so appends keep it sorted.
        self._frees: deque[float] = deque()

    def ready_at(self, now: float) -> float | None:
        """When one more request may start: `now` or later; None while every place is
        held by a request in flight (one must be answered first)."""
        while self._frees and self._frees[0] <= now:
            self._frees.popleft()
        if self.in_flight + len(self._frees) < self.rate.count:
            return now
        return self._frees[0] if self._frees else None

    def start(self) -> None:
        self.in_flight += 1

    def answered(self, now: float) -> None:
        self.in_flight -= 1
        self._frees.append(now + self.rate.per_seconds)

    @property
    def idle(self) -> bool:
        return self.in_flight == 0 and not self._frees


_RATE = re.compile(r"(\d+)\s*/\s*(\S*)")


def parse_rate(text: str) -> Rate:
    """A rate setting: "1200/60s", "100/1s", "10/s", "5/500ms", "600/1m"."""
    error = ValueError(
        f"invalid rate {text!r}: expected COUNT/DURATION such as '1200/60s' or '10/s'"
    )
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise error
    count, window = match.groups()
    if window[:1].isalpha():
        window = "1" + window  # "10/s" reads as "10/1s"
    try:
        return Rate(int(count), parse_duration(window).total_seconds())
    except ValueError:
        raise error from None


class Limiter(Protocol):
    """What the sender needs from a limiter; a fleet-wide one (shared through the
    database) can stand in for `AccountLimiter`."""

    def slot(self, sender: str | None = None) -> AbstractAsyncContextManager[None]:
        """Wait until one request to Twilio may start; the request runs inside.

        `sender` is the From address (or Messaging Service SID) for per-sender
        pacing; None for requests that send nothing (List, Get).
        """
        ...

    def slow_down(self, retry_after: float | None) -> None:
        """Twilio answered 429: pause new requests for `retry_after` seconds, or for
        the limiter's own backoff when Twilio did not say."""
        ...


@dataclass
class Waiting:
    """Whether one request has blocked yet on its way to a slot.

    Set before each await that blocks, not returned after it, so that a request
    cancelled while it waits still counts in the wait metrics."""

    blocked: bool = False


@dataclass
class _SenderGate:
    """One sender's queue: whoever holds `lock` is the next of its requests to go."""

    lock: asyncio.Lock
    next_start: float
    places: PlacesInWindow
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    users: int = 0


class PauseOn429:
    """The pause every request waits out after Twilio answers 429; shared by the limiters.

    With a Retry-After the pause is that long (capped); without one it starts at
    INITIAL_BACKOFF, doubles with each 429 that arrives after the previous pause ended,
    and halves again with each request that finishes without a 429 meanwhile.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.paused_until = float("-inf")
        self._backoff = INITIAL_BACKOFF
        # Bumped by every 429: a request that saw no bump while in flight is a success.
        self.slowdowns = 0

    def on_429(self, retry_after: float | None) -> float | None:
        """Start or extend the pause; returns its length, or None when nothing changed."""
        now = self._clock()
        self.slowdowns += 1
        if retry_after is not None and retry_after > 0:
            # Capped: a bogus header must not stall every send for hours.
            pause = min(retry_after, MAX_BACKOFF)
        elif now >= self.paused_until:
            # During a pause, more 429s come from requests that were already in flight
            # when it began: they say nothing new, so only a 429 after the pause grows
            # the next one.
            pause = self._backoff
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)
        else:
            return None
        self.paused_until = max(self.paused_until, now + pause)
        return pause

    def on_success(self, slowdowns_at_start: int) -> None:
        if self.slowdowns == slowdowns_at_start:
            self._backoff = max(self._backoff / 2, INITIAL_BACKOFF)


class LimiterBase:
    """The settings and counters every limiter has: `AccountLimiter` here, and
    `PostgresLimiter` (adapter.store.postgres.limiter)."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        rate: Rate,
        per_sender_mps: float | None,
        clock: Callable[[], float],
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        if per_sender_mps is not None and not per_sender_mps > 0:
            raise ValueError(f"per_sender_mps must be positive, not {per_sender_mps}")
        self._max_concurrency = max_concurrency
        self._rate = rate
        self._sender_interval = None if per_sender_mps is None else 1.0 / per_sender_mps
        self._clock = clock
        self._pause = PauseOn429(clock)
        self._in_flight = 0
        self._waits = 0
        self._wait_seconds = 0.0

    @property
    def waits(self) -> int:
        """How many of this process's requests had to wait for a slot (for metrics)."""
        return self._waits

    @property
    def wait_seconds(self) -> float:
        """How long, in total, this process's requests waited for a slot (for metrics)."""
        return self._wait_seconds

    @property
    def in_flight(self) -> int:
        """This process's requests in flight."""
        return self._in_flight

    def _count_wait(self, arrived: float, waiting: Waiting) -> None:
        if waiting.blocked:
            self._waits += 1
            self._wait_seconds += self._clock() - arrived


class AccountLimiter(LimiterBase):
    """The limits of one Twilio account, for the requests of this process."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        rate: Rate,
        per_sender_mps: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(
            max_concurrency=max_concurrency, rate=rate, per_sender_mps=per_sender_mps, clock=clock
        )
        self._sleep = sleep
        self._sender_rate = None if per_sender_mps is None else sender_rate(per_sender_mps)

        # Only the holder of `_admission` looks at or changes the state below, so
        # the checks and the bookkeeping of one admission cannot interleave with
        # another's; asyncio.Lock wakes its waiters in arrival order.
        self._admission = asyncio.Lock()
        # Set whenever a request is answered: a concurrency slot frees, and a place
        # held in flight starts its last window.
        self._answered = asyncio.Event()
        self._places = PlacesInWindow(rate)

        self._gates: dict[str, _SenderGate] = {}

    def slot(self, sender: str | None = None) -> AbstractAsyncContextManager[None]:
        return self._slot(sender)

    def slow_down(self, retry_after: float | None) -> None:
        self._pause.on_429(retry_after)

    @contextlib.asynccontextmanager
    async def _slot(self, sender: str | None) -> AsyncIterator[None]:
        slowdowns_at_start, gate = await self._acquire(sender)
        try:
            yield
            # Reached only when the request did not raise.
            self._pause.on_success(slowdowns_at_start)
        except TwilioRateLimited as error:
            # Every request made in a slot teaches the limiter about Twilio's 429s, so
            # no caller (sender, reconciliation, history) has to remember to.
            self.slow_down(error.retry_after)
            raise
        finally:
            # The answer (or the failure) has arrived: the request's places now last
            # one more window, from here.
            answered = self._clock()
            self._in_flight -= 1
            self._places.answered(answered)
            self._answered.set()
            if gate is not None:
                gate.places.answered(answered)
                gate.answered.set()

    async def _acquire(self, sender: str | None) -> tuple[int, _SenderGate | None]:
        """Wait for admission; returns the slow_down() count at the start and the
        sender's gate, if its pace applies."""
        arrived = self._clock()
        waiting = Waiting()
        gate = None
        try:
            if sender is None or self._sender_interval is None:
                await self._admit(waiting)
            else:
                gate = await self._admit_for_sender(sender, self._sender_interval, waiting)
        finally:
            # Cancelled waits count too: they are time callers spent blocked.
            self._count_wait(arrived, waiting)
        return self._pause.slowdowns, gate

    async def _admit_for_sender(
        self, sender: str, interval: float, waiting: Waiting
    ) -> _SenderGate:
        assert self._sender_rate is not None
        gate = self._gates.get(sender)
        if gate is None:
            self._forget_idle_gates()
            gate = self._gates[sender] = _SenderGate(
                asyncio.Lock(), float("-inf"), PlacesInWindow(self._sender_rate)
            )
        gate.users += 1
        try:
            if gate.lock.locked():
                waiting.blocked = True
            async with gate.lock:
                while True:
                    now = self._clock()
                    ready = gate.places.ready_at(now)
                    if ready is None:
                        waiting.blocked = True
                        gate.answered.clear()
                        await gate.answered.wait()
                        continue
                    ready = max(ready, gate.next_start)
                    if ready <= now:
                        break
                    waiting.blocked = True
                    await self._sleep(ready - now)
                # Only this lock's holder starts the sender's requests, and answers
                # never take places, so the check above still holds after this wait.
                started = await self._admit(waiting)
                gate.places.start()
                # Spaced from the actual start, which the account queue may delay.
                gate.next_start = started + interval
            return gate
        finally:
            gate.users -= 1

    def _forget_idle_gates(self) -> None:
        # A gate may go once no request uses it, none of its places is held and its
        # spacing has run out: a new gate for that sender then starts at once, which is
        # what the old one allowed.
        now = self._clock()
        idle = [
            sender
            for sender, gate in self._gates.items()
            if gate.users == 0
            and gate.next_start <= now
            and gate.places.ready_at(now) is not None
            and gate.places.idle
        ]
        for sender in idle:
            del self._gates[sender]

    async def _admit(self, waiting: Waiting) -> float:
        """Wait until the account's limits let one more request start, and count it
        as started. Returns when it started; `waiting` says whether it had to wait.

        Nothing is recorded until the final check passes, with no await between
        the check and the record: a caller cancelled while waiting leaves no trace.
        """
        if self._admission.locked():
            waiting.blocked = True
        async with self._admission:
            while True:
                now = self._clock()
                ready_at = self._places.ready_at(now)
                if self._in_flight >= self._max_concurrency or ready_at is None:
                    # Only an answer frees a concurrency slot, or starts the last
                    # window of a place that every request in flight holds.
                    waiting.blocked = True
                    self._answered.clear()
                    await self._answered.wait()
                    continue
                ready_at = max(ready_at, self._pause.paused_until)
                if ready_at > now:
                    # Re-checked after the sleep: a slow_down() may have moved the
                    # pause on, and sleeps may end a little early.
                    waiting.blocked = True
                    await self._sleep(ready_at - now)
                    continue
                self._in_flight += 1
                self._places.start()
                return now
