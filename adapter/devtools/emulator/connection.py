"""Cutting a client's connection mid-request, for the `drop` fault.

ASGI has no "hang up" message, so this reaches below it. Under uvicorn (its h11,
httptools and zttp protocols alike) the server's `send` is a bound method of a
`RequestResponseCycle` that holds the connection's asyncio transport; aborting that
transport resets the TCP connection, and the client sees it closed with no answer.
Middleware (Starlette's own, the adapter's when the emulator is mounted) wraps `send` in
closures, so the server's `send` is found by following closure cells.

Where no transport can be reached (httpx.ASGITransport in unit tests, or a middleware
that hides `send` behind a stream), `drop_connection` raises
`httpx.RemoteProtocolError("Server disconnected without sending a response.")`. Through
ASGITransport that exception reaches the caller unchanged: exactly what an httpx client
sees when a real server hangs up. Under a real server the fallback cannot hang up, and
the client gets a 500 instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx

# Deep enough for any sane middleware stack; a bound on a walk through foreign objects.
_MAX_DEPTH = 24


async def drop_connection(send: Callable[..., Any]) -> None:
    """Abort the connection behind `send` without answering; see the module docstring."""
    cycle = _find_server_cycle(send, depth=0, seen=set())
    if cycle is None:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    cycle.transport.abort()
    # uvicorn hears of the abort in connection_lost, a loop turn later. If the app
    # returned first, uvicorn would think it forgot to answer: log an error and write a
    # 500 into the dead socket. Marking the cycle disconnected (every uvicorn protocol's
    # cycle has the flag) tells it at once; yielding lets connection_lost run as well.
    if hasattr(cycle, "disconnected"):
        cycle.disconnected = True
    await asyncio.sleep(0)


def _find_server_cycle(candidate: object, depth: int, seen: set[int]) -> Any | None:
    if depth > _MAX_DEPTH or id(candidate) in seen:
        return None
    seen.add(id(candidate))
    owner = getattr(candidate, "__self__", None)
    transport = getattr(owner, "transport", None)
    # Duck-typed, so whichever event loop made the transport (asyncio, uvloop) will do.
    if callable(getattr(transport, "abort", None)):
        return owner
    for cell in getattr(candidate, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if callable(contents):
            found = _find_server_cycle(contents, depth + 1, seen)
            if found is not None:
                return found
    return None
