"""uvicorn's httptools protocol under the connection guard (adapter/cli/connection_guard.py):
the request's progress is followed through httptools' callbacks (message begun, headers
complete, message complete) and uvicorn's response-complete hook.

uvicorn's httptools path sets no limit on a request's head: httptools gathers a header's
name and value in memory, however long, before uvicorn sees it. Here a head over
MAX_HEADER_BYTES is refused with 431 and the connection closed; what is buffered stays
bounded because data is fed to the parser in slices of at most MAX_HEADER_BYTES, and a head
still incomplete after MAX_HEADER_BYTES of it were fed is refused there and then.

Imported only when httptools is (adapter/cli/server.py): uvicorn's module imports it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from adapter.cli.connection_guard import (
    ConnectionGuard,
    ConnectionLimits,
    GuardedConnection,
    closing_response,
)

TOO_LARGE_RESPONSE = closing_response(
    b"431 Request Header Fields Too Large", b"the request's headers are too large"
)
# Counted for each header beside its name and value: ": " and CRLF.
_HEADER_OVERHEAD = 4


class HeadersTooLarge(Exception):
    """Raised in a parser callback to stop parsing a head over the limit."""


def guarded_httptools_protocol(
    limits: ConnectionLimits, max_header_bytes: int
) -> type[HttpToolsProtocol]:
    """An httptools protocol class enforcing `limits` and refusing heads over
    `max_header_bytes`; its connections share one guard."""
    guard = ConnectionGuard(limits)

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        watch: GuardedConnection
        # Where the parser stands in the latest request: between requests (or before the
        # first), inside its head, or inside its body.
        _parsing: Literal["between", "head", "body"] = "between"
        # Bytes fed while no request's body was being read, since the last head ended:
        # what the parser may hold of an unfinished head.
        _fed_outside_body = 0
        # Requests read whole and not yet answered (the one in the app, those queued
        # behind it when pipelined).
        _unanswered: list[RequestResponseCycle]
        # A head over the limit was met: nothing more is read; 431 once the requests
        # before it are answered.
        _refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._unanswered = []
            self.watch = guard.admit(transport, self.loop, self._can_answer)

        def connection_lost(self, exc: Exception | None) -> None:
            self.watch.lost()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            # A request begun here starts its headers' deadline in _follow_request.
            view = memoryview(data)
            while view and not self._refused and not self.transport.is_closing():
                piece, view = view[:max_header_bytes], view[max_header_bytes:]
                if self._parsing != "body":
                    self._fed_outside_body += len(piece)
                super().data_received(piece)  # type: ignore[arg-type]
                if self._parsing != "body" and self._fed_outside_body > max_header_bytes:
                    self._refuse_head()
            self._follow_request()

        # httptools' callbacks

        def on_message_begin(self) -> None:
            self._parsing = "head"
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            # A head read whole at once never trips the fed-bytes check: it is measured
            # here, from what uvicorn gathered of it, before the app sees it.
            head = len(self.url) + sum(len(n) + len(v) + _HEADER_OVERHEAD for n, v in self.headers)
            if head > max_header_bytes:
                self._refused = True
                raise HeadersTooLarge  # the parser stops; uvicorn calls send_400_response
            self._parsing = "body"
            self._fed_outside_body = 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._parsing = "between"
            self._fed_outside_body = 0
            super().on_message_complete()
            if self.cycle is not None and not self.cycle.response_complete:
                self._unanswered.append(self.cycle)

        def on_response_complete(self) -> None:
            self._unanswered = [c for c in self._unanswered if not c.response_complete]
            super().on_response_complete()
            if self._refused and not self._unanswered:
                self._answer_too_large()
            else:
                self._follow_request()

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers 400 to any parser error; ours (a head too large) gets its 431.
            if self._refused:
                self._refuse_head()
            else:
                super().send_400_response(msg)

        # Following the request

        def _refuse_head(self) -> None:
            self._refused = True
            if not self._unanswered:
                self._answer_too_large()
            else:
                # Requests read before this head are being answered: they get their
                # answers first; nothing more is read meanwhile.
                self.flow.pause_reading()

        def _answer_too_large(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(TOO_LARGE_RESPONSE)
                self.transport.close()

        def _can_answer(self) -> bool:
            return not self._unanswered and (self.cycle is None or self.cycle.response_complete)

        def _follow_request(self) -> None:
            if self.transport.is_closing() or self._refused:
                return
            watch = self.watch
            if self._unanswered:
                if watch.phase != "app":
                    watch.answering()
            elif self._parsing == "body":
                if watch.phase != "body":
                    watch.awaiting_body()
            elif self._parsing == "head":
                if watch.phase in ("app", "body", "idle"):
                    # A request begun while earlier ones were being answered (pipelined),
                    # or behind a body that outlived its answer: its headers' deadline runs
                    # from now, as if it began now.
                    watch.awaiting_headers()
            elif watch.phase in ("app", "body"):
                watch.between_requests()

    return GuardedHttpToolsProtocol
