"""uvicorn, hardened for a port the internet can reach: no client holds a connection for free.

Stock uvicorn (h11) keeps a connection open for as long as its client likes while the
request's headers or body trickle in, and accepts connections until the process runs out
of file descriptors; then real webhooks get no answer and asyncio logs every failed
accept. Here:

- the request's headers must be complete within `header_timeout` of its first byte (or of
  the connection's opening), however slowly bytes keep coming; then 408 and close;
- its body within `body_timeout` of the headers, however slowly; then the connection is
  cut (the endpoint sees a disconnect and stores nothing);
- between requests a kept-alive connection waits `keepalive_timeout` (uvicorn's own);
- at most `max_connections` wait for a request: one more evicts the connection that has
  waited longest (at least MIN_VICTIM_AGE) for its request, the slow before the idle, never
  one whose request is being answered; if none has waited that long, the newcomer is let
  in with MIN_VICTIM_AGE to send its headers (a real client needs milliseconds), up to
  HARD_LIMIT_FACTOR x the cap. So slow clients, even reconnecting at once, never crowd out
  Twilio, and descriptors stay bounded;
- accept errors (out of file descriptors) are logged once per ACCEPT_ERROR_LOG_INTERVAL
  with a count, not once per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("adapter.server")

# Header bytes h11 buffers before refusing a request (431 in spirit, 400 from uvicorn):
# Twilio's headers are well under 2 KiB.
MAX_HEADER_BYTES = 16 * 1024
ACCEPT_ERROR_LOG_INTERVAL = 10.0
# A connection gives way to a new one only after waiting this long for its request; a
# connection admitted over the cap (nobody could give way) has this long for its headers.
MIN_VICTIM_AGE = 1.0
# Over-cap admissions stop at this multiple of max_connections: then new ones are refused.
HARD_LIMIT_FACTOR = 2
# File descriptors kept for everything but client connections: the store, the LISTEN
# connection, HTTP clients to Twilio and bots, log files.
RESERVED_DESCRIPTORS = 128
_ACCEPT_ERROR = "socket.accept() out of system resource"
_TIMEOUT_BODY = b"the request's headers took too long"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_connections: int


def guarded_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An h11 protocol class enforcing `limits`; its connections share one waiting list."""
    # Connections waiting for (the rest of) a request, oldest first: eviction candidates.
    waiting: dict[GuardedH11Protocol, float] = {}

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase = "new"

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._wait_for_headers()
            if len(self.connections) > limits.max_connections:
                self._make_room()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            waiting.pop(self, None)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow_request()

        def on_response_complete(self) -> None:
            # Between requests uvicorn's keep-alive timer rules; the next request's first
            # byte starts a new header deadline (see _follow_request).
            self._disarm()
            self._phase = "idle"
            waiting[self] = time.monotonic()
            super().on_response_complete()
            self._follow_request()

        def _follow_request(self) -> None:
            if self.transport.is_closing():
                return
            state = self.conn.their_state
            if state is h11.IDLE and self._phase == "idle" and self.conn.trailing_data[0]:
                self._wait_for_headers()
            elif state is h11.SEND_BODY and self._phase != "body":
                self._phase = "body"
                self._arm(limits.body_timeout)
            elif state not in (h11.IDLE, h11.SEND_BODY) and self._phase != "app":
                # The request is whole: the app has it, and no deadline of ours applies.
                self._phase = "app"
                self._disarm()
                waiting.pop(self, None)

        def _wait_for_headers(self) -> None:
            self._phase = "headers"
            waiting[self] = time.monotonic()
            self._arm(limits.header_timeout)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self._phase == "headers" and self.conn.our_state is h11.IDLE:
                self.transport.write(_TIMEOUT_RESPONSE)
            # abort, not close: a client that does not read must not keep the socket.
            self.transport.abort()

        def _make_room(self) -> None:
            # Connections closing are still counted until asyncio reports them lost (the
            # next loop turn), and many may be accepted in one turn: count those already
            # on their way out, and evict only as many more as it takes.
            closing = sum(1 for other in self.connections if other.transport.is_closing())
            excess = len(self.connections) - closing - limits.max_connections
            if excess <= 0:
                return
            victims = _victims(excess, exclude=self)
            for victim in victims:
                waiting.pop(victim)
                victim.transport.abort()
            if excess > len(victims):
                if len(self.connections) - closing - len(victims) > HARD_LIMIT_FACTOR * (
                    limits.max_connections
                ):
                    waiting.pop(self, None)
                    self.transport.abort()
                else:
                    # Nobody has waited long enough to give way. Refusing would turn away
                    # Twilio as readily as an attacker; instead this one gets a short
                    # while for its headers, which a real client sends at once.
                    self._arm(MIN_VICTIM_AGE)

    def _victims(count: int, exclude: GuardedH11Protocol) -> list[GuardedH11Protocol]:
        """Up to `count` connections to close, oldest first: those mid-request (slow) before
        those idle between requests, and only those that have waited MIN_VICTIM_AGE. A
        client that sends its request at once is never that slow; and a flood of new
        connections cannot make old ones churn faster than the cap per MIN_VICTIM_AGE."""
        old_enough = time.monotonic() - MIN_VICTIM_AGE
        found: list[GuardedH11Protocol] = []
        for phases in (("headers", "body"), ("idle",)):
            for connection, since in waiting.items():
                if since > old_enough or len(found) >= count:
                    break
                if (
                    connection is not exclude
                    and connection._phase in phases
                    and not connection.transport.is_closing()
                    and connection not in found
                ):
                    found.append(connection)
        return found

    return GuardedH11Protocol


class AcceptErrorThrottle:
    """A loop exception handler: accept errors once per `interval`, with how many."""

    def __init__(
        self,
        interval: float = ACCEPT_ERROR_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._last = float("-inf")
        self._suppressed = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != _ACCEPT_ERROR:
            loop.default_exception_handler(context)
            return
        now = self._clock()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        error = context.get("exception")
        logger.error(
            "cannot accept connections: %s (%d more such errors in the last %gs); too many "
            "open connections or files: lower SMS_ADAPTER_MAX_CONNECTIONS or raise the "
            "descriptor limit (ulimit -n)",
            error,
            self._suppressed,
            self._interval,
        )
        self._last, self._suppressed = now, 0


def descriptor_budget(wanted: int) -> int:
    """`wanted` connections, or fewer if the process's descriptor limit cannot hold them
    beside what the adapter needs for itself. Raises the soft limit first if it can."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = HARD_LIMIT_FACTOR * wanted + RESERVED_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    budget = max((soft - RESERVED_DESCRIPTORS) // HARD_LIMIT_FACTOR, 16)
    logger.warning(
        "SMS_ADAPTER_MAX_CONNECTIONS=%d does not fit the descriptor limit (%d): "
        "serving at most %d connections",
        wanted,
        soft,
        budget,
    )
    return budget


def server_config(app: Any, limits: ConnectionLimits, **options: Any) -> uvicorn.Config:
    """uvicorn's config for `app`, with the limits and our logging (`options`: host,
    port, log_level, ...)."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        timeout_keep_alive=max(1, round(limits.keepalive_timeout)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        # uvicorn's lines go through adapter.logs (format, redaction), not its own config.
        log_config=None,
        # We read X-Forwarded-* ourselves, only from SMS_ADAPTER_TRUSTED_PROXIES.
        proxy_headers=False,
        server_header=False,
        **options,
    )


async def serve(server: uvicorn.Server, sockets: list[socket.socket] | None = None) -> None:
    """Run `server` on the running loop, with accept errors throttled."""
    asyncio.get_running_loop().set_exception_handler(AcceptErrorThrottle())
    await server.serve(sockets=sockets)


def run(app: Any, limits: ConnectionLimits, **options: Any) -> None:
    limits = ConnectionLimits(
        limits.header_timeout,
        limits.body_timeout,
        limits.keepalive_timeout,
        descriptor_budget(limits.max_connections),
    )
    asyncio.run(serve(uvicorn.Server(server_config(app, limits, **options))))


__all__ = [
    "AcceptErrorThrottle",
    "ConnectionLimits",
    "guarded_protocol",
    "run",
    "serve",
    "server_config",
]
