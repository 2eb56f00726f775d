"""Connection hygiene, whatever parses HTTP: how long a connection may take over each part of
a request, and which connection gives way when too many are open.

The rules (the README's "Hostile and slow clients" states them for users):

- a request's headers must be complete within `header_timeout` of its first byte (or of
  the connection's opening), however slowly bytes keep coming; then 408 and close;
- its body within `body_timeout` of the headers, however slowly; then the connection is
  cut (the endpoint sees a disconnect and stores nothing);
- between requests a kept-alive connection waits `keepalive_timeout`, then is closed;
- at most `max_connections` wait for a request: one more evicts the connection that has
  waited longest (at least MIN_VICTIM_AGE) for its request, the slow before the idle, never
  one whose request is being answered; if none has waited that long, the newcomer is let
  in with MIN_VICTIM_AGE to send its headers (a real client needs milliseconds), up to
  HARD_LIMIT_FACTOR x the cap. So slow clients, even reconnecting at once, never crowd out
  Twilio, and descriptors stay bounded.

A protocol (adapter/cli/guarded_h11.py, adapter/cli/guarded_httptools.py) admits each
connection here and reports where its request stands: waiting for headers, receiving the
body, whole (being answered), or answered (idle between requests). Deadlines, the waiting
list and eviction live only here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# A connection gives way to a new one only after waiting this long for its request; a
# connection admitted over the cap (nobody could give way) has this long for its headers.
MIN_VICTIM_AGE = 1.0
# Over-cap admissions stop at this multiple of max_connections: then new ones are refused.
HARD_LIMIT_FACTOR = 2


def closing_response(status: bytes, body: bytes) -> bytes:
    """A plain-text answer the guard writes itself, before closing the connection."""
    return (
        b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (status, len(body), body)
    )


TIMEOUT_RESPONSE = closing_response(b"408 Request Timeout", b"the request's headers took too long")

# A deadline this close when its timer fires counts as reached (uvloop's clock is in ms).
_TIMER_SLACK = 0.001

# headers: waiting for (the rest of) a request's headers; body: for its body; app: the
# request is whole and being answered, no deadline of ours applies; idle: answered, waiting
# for the next request.
Phase = Literal["headers", "body", "app", "idle"]


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_connections: int


class ConnectionGuard:
    """One server's connections: their deadlines, and who gives way to a newcomer."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: set[GuardedConnection] = set()
        # Connections waiting for (the rest of) a request, oldest first: eviction candidates.
        self.waiting: dict[GuardedConnection, float] = {}

    def admit(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        can_answer: Callable[[], bool],
    ) -> GuardedConnection:
        """A connection just opened: its headers' deadline runs from now. `can_answer` says
        whether a 408 may be written now (no response of the protocol's is under way)."""
        connection = GuardedConnection(self, transport, loop, can_answer)
        self.open.add(connection)
        connection.awaiting_headers()
        if len(self.open) > self.limits.max_connections:
            self._make_room(connection)
        return connection

    def _make_room(self, newcomer: GuardedConnection) -> None:
        # Connections closing are still counted until the loop reports them lost (the next
        # loop turn), and many may be accepted in one turn: count those already on their
        # way out, and evict only as many more as it takes.
        closing = sum(1 for other in self.open if other.transport.is_closing())
        excess = len(self.open) - closing - self.limits.max_connections
        if excess <= 0:
            return
        victims = self._victims(excess, exclude=newcomer)
        for victim in victims:
            self.waiting.pop(victim)
            victim.transport.abort()
        if excess > len(victims):
            if len(self.open) - closing - len(victims) > HARD_LIMIT_FACTOR * (
                self.limits.max_connections
            ):
                self.waiting.pop(newcomer, None)
                newcomer.transport.abort()
            else:
                # Nobody has waited long enough to give way. Refusing would turn away
                # Twilio as readily as an attacker; instead this one gets a short while
                # for its headers, which a real client sends at once.
                newcomer.arm(MIN_VICTIM_AGE)

    def _victims(self, count: int, exclude: GuardedConnection) -> list[GuardedConnection]:
        """Up to `count` connections to close, oldest first: those mid-request (slow) before
        those idle between requests, and only those that have waited MIN_VICTIM_AGE. A
        client that sends its request at once is never that slow; and a flood of new
        connections cannot make old ones churn faster than the cap per MIN_VICTIM_AGE."""
        old_enough = time.monotonic() - MIN_VICTIM_AGE
        found: list[GuardedConnection] = []
        for phases in (("headers", "body"), ("idle",)):
            for connection, since in self.waiting.items():
                if since > old_enough or len(found) >= count:
                    break
                if (
                    connection is not exclude
                    and connection.phase in phases
                    and not connection.transport.is_closing()
                    and connection not in found
                ):
                    found.append(connection)
        return found


class GuardedConnection:
    """One connection's phase and deadline. Its protocol reports the request's progress;
    this decides how long each part may take."""

    phase: Phase = "headers"

    def __init__(
        self,
        guard: ConnectionGuard,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        can_answer: Callable[[], bool],
    ) -> None:
        self.transport = transport
        self._guard = guard
        self._loop = loop
        self._can_answer = can_answer
        # When the current phase's time is up (loop time), or None; and the one timer
        # that wakes up for it (see arm).
        self._due: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def awaiting_headers(self) -> None:
        """The connection opened, or a request's first byte came after the last answer."""
        self.phase = "headers"
        self._wait_from_now()
        self.arm(self._guard.limits.header_timeout)

    def awaiting_body(self) -> None:
        """The headers are in; the body is not (it keeps its place in the waiting list)."""
        self.phase = "body"
        self.arm(self._guard.limits.body_timeout)

    def answering(self) -> None:
        """The request is whole: the app has it, and no deadline of ours applies."""
        self.phase = "app"
        self.disarm()
        self._guard.waiting.pop(self, None)

    def between_requests(self) -> None:
        """Every request so far is answered: the connection idles until the next one."""
        self.phase = "idle"
        self._wait_from_now()
        self.arm(self._guard.limits.keepalive_timeout)

    def lost(self) -> None:
        self._release()
        self._guard.waiting.pop(self, None)
        self._guard.open.discard(self)

    def arm(self, seconds: float) -> None:
        # Each request moves the deadline several times (headers, none, keep-alive); a
        # timer per move was most of the guard's cost. One timer stays: re-created only if
        # the deadline comes sooner than it, and when it fires early (the deadline moved
        # later meanwhile) it sleeps again until the deadline.
        self._due = due = self._loop.time() + seconds
        if self._timer is None or self._timer.when() > due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(due, self._wake)

    def disarm(self) -> None:
        self._due = None  # the timer, if any, finds nothing due

    def _release(self) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake(self) -> None:
        self._timer = None
        if self._due is None:
            return
        if self._due - self._loop.time() > _TIMER_SLACK:
            self._timer = self._loop.call_at(self._due, self._wake)
            return
        self._due = None
        self._expired()

    def _wait_from_now(self) -> None:
        # Re-inserted, not updated in place: the waiting list stays oldest first, which
        # _victims relies on to stop at the first connection too young to evict.
        self._guard.waiting.pop(self, None)
        self._guard.waiting[self] = time.monotonic()

    def _expired(self) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if self.phase == "idle" and not transport.get_write_buffer_size():
            transport.close()  # nothing owed, nothing unsent: a plain close
            return
        if self.phase == "headers" and self._can_answer():
            transport.write(TIMEOUT_RESPONSE)
        # abort, not close: a client that does not read must not keep the socket.
        transport.abort()
