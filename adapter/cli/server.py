"""uvicorn, hardened for a port the internet can reach, on the fastest stack installed.

The event loop is uvloop and the HTTP parser httptools when they can be imported (both are
dependencies), else asyncio's own loop and h11. Either parser runs under the same
connection guard (adapter/cli/connection_guard.py: header, body and keep-alive deadlines, a
cap on connections with eviction of the slowest), through a thin protocol of its own
(adapter/cli/guarded_httptools.py, adapter/cli/guarded_h11.py). Request heads are capped at
MAX_HEADER_BYTES: under httptools whichever way they arrive (431); under h11 only while
still incomplete (400), since h11 takes a whole head read at once, whatever its size.

Stock uvicorn accepts connections until the process runs out of file descriptors; then real
webhooks get no answer and asyncio logs every failed accept. Here the cap keeps descriptors
bounded (the descriptor limit is raised to fit it, or the cap lowered), and running out all
the same is logged once per ACCEPT_ERROR_LOG_INTERVAL, not once per attempt: asyncio
reports each failed accept to the loop's exception handler (AcceptErrorThrottle counts
them); uvloop reports none (libuv accepts and closes the connections it has no descriptor
for), so under uvloop DescriptorWatch looks at the descriptors in use every interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import resource
import socket
import time
from collections.abc import Callable
from typing import Any, Literal

import uvicorn

from adapter.cli.connection_guard import HARD_LIMIT_FACTOR, MIN_VICTIM_AGE, ConnectionLimits
from adapter.cli.guarded_h11 import guarded_h11_protocol

logger = logging.getLogger("adapter.server")

Parser = Literal["httptools", "h11"]
EventLoop = Literal["uvloop", "asyncio"]

# A request's head (request line and headers) may be this large: Twilio's are well under
# 2 KiB. Over it: 431 under httptools (adapter/cli/guarded_httptools.py); h11 refuses a head
# still incomplete at this size, uvicorn answering 400.
MAX_HEADER_BYTES = 16 * 1024
ACCEPT_ERROR_LOG_INTERVAL = 10.0
# File descriptors kept for everything but client connections: the store, the LISTEN
# connection, HTTP clients to Twilio and bots, log files.
RESERVED_DESCRIPTORS = 128
# asyncio's words for a failed accept (base_events / selector_events), to the exception handler.
_ACCEPT_ERROR = "socket.accept() out of system resource"
_TOO_MANY_ADVICE = (
    "too many open connections or files: lower SMS_ADAPTER_MAX_CONNECTIONS or raise the "
    "descriptor limit (ulimit -n)"
)


def default_parser() -> Parser:
    """httptools when it can be imported (C, several times h11's speed), else h11."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def default_event_loop() -> EventLoop:
    """uvloop when it can be imported (libuv; not on Windows), else asyncio's own."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def loop_factory(kind: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def server_stack(loop: EventLoop | None = None, http: Parser | None = None) -> str:
    """What `serve` runs on, in words: "uvicorn on uvloop + httptools"."""
    return f"uvicorn on {loop or default_event_loop()} + {http or default_parser()}"


def guarded_protocol(limits: ConnectionLimits, http: Parser) -> type[asyncio.Protocol]:
    """uvicorn's protocol class for `http`, enforcing `limits`; its connections share one
    guard."""
    if http == "httptools":
        from adapter.cli.guarded_httptools import guarded_httptools_protocol

        return guarded_httptools_protocol(limits, MAX_HEADER_BYTES)
    return guarded_h11_protocol(limits)


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
            "cannot accept connections: %s (%d more such errors in the last %gs); "
            + _TOO_MANY_ADVICE,
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


class DescriptorWatch:
    """For loops that report no failed accept (uvloop): every `interval`, an error line if
    the process has (almost) no file descriptor left, so running out is seen all the same."""

    def __init__(
        self,
        interval: float = ACCEPT_ERROR_LOG_INTERVAL,
        left: Callable[[], int | None] | None = None,
    ) -> None:
        self._interval = interval
        self._left = left or descriptors_left

    def check(self) -> None:
        left = self._left()
        if left is not None and left <= 1:
            logger.error(
                "cannot accept connections: %s file descriptors left (limit %d); "
                + _TOO_MANY_ADVICE,
                left,
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.check()


def descriptors_left() -> int | None:
    """File descriptors the process may still open, or None where the system does not say
    (no /proc/self/fd or /dev/fd listing)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            # Less the one descriptor the listing itself holds open.
            in_use = len(os.listdir(directory)) - 1
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE):
                return 0  # not even one left to look
            continue
        return None if soft == resource.RLIM_INFINITY else soft - in_use
    return None


def server_config(
    app: Any, limits: ConnectionLimits, http: Parser | None = None, **options: Any
) -> uvicorn.Config:
    """uvicorn's config for `app`, with the limits and our logging (`options`: host,
    port, log_level, ...), on `http` (default_parser() unless given)."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(limits, http or default_parser()),
        # uvicorn's own keep-alive timer (whole seconds) only backs up the guard's, which
        # also covers a body that outlived its answer: rounded up, never ahead of it.
        timeout_keep_alive=max(1, math.ceil(limits.keepalive_timeout)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        # The adapter serves no WebSocket: an upgrade request is an ordinary request.
        ws="none",
        # uvicorn's lines go through adapter.logs (format, redaction), not its own config.
        log_config=None,
        # We read X-Forwarded-* ourselves, only from SMS_ADAPTER_TRUSTED_PROXIES.
        proxy_headers=False,
        server_header=False,
        **options,
    )


async def serve(
    server: uvicorn.Server,
    sockets: list[socket.socket] | None = None,
    descriptor_check_interval: float = ACCEPT_ERROR_LOG_INTERVAL,
) -> None:
    """Run `server` on the running loop, with running out of descriptors logged once per
    interval, however the loop reports it."""
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(AcceptErrorThrottle())
    # asyncio's own loops report failed accepts to the handler above; uvloop does not.
    watch = None
    if not isinstance(loop, asyncio.BaseEventLoop):
        watch = asyncio.create_task(DescriptorWatch(descriptor_check_interval).run())
    try:
        await server.serve(sockets=sockets)
    finally:
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch


def run(app: Any, limits: ConnectionLimits, **options: Any) -> None:
    """Serve `app` until stopped, on default_event_loop() and default_parser()."""
    limits = ConnectionLimits(
        limits.header_timeout,
        limits.body_timeout,
        limits.keepalive_timeout,
        descriptor_budget(limits.max_connections),
    )
    loop, http = default_event_loop(), default_parser()
    config = server_config(app, limits, http=http, **options)
    logger.info("HTTP server: %s", server_stack(loop, http))
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(serve(uvicorn.Server(config)))


__all__ = [
    "HARD_LIMIT_FACTOR",
    "MAX_HEADER_BYTES",
    "MIN_VICTIM_AGE",
    "AcceptErrorThrottle",
    "ConnectionLimits",
    "DescriptorWatch",
    "EventLoop",
    "Parser",
    "default_event_loop",
    "default_parser",
    "guarded_protocol",
    "loop_factory",
    "run",
    "serve",
    "server_config",
    "server_stack",
]
