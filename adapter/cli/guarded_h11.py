"""uvicorn's h11 protocol under the connection guard (adapter/cli/connection_guard.py): the
request's progress is read from h11's states after each event. The fallback parser, when
httptools is not installed; h11 itself refuses a head over MAX_HEADER_BYTES still incomplete
(uvicorn answers 400 and closes), given as `h11_max_incomplete_event_size`."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from adapter.cli.connection_guard import ConnectionGuard, ConnectionLimits, GuardedConnection


def guarded_h11_protocol(limits: ConnectionLimits) -> type[H11Protocol]:
    """An h11 protocol class enforcing `limits`; its connections share one guard."""
    guard = ConnectionGuard(limits)

    class GuardedH11Protocol(H11Protocol):
        watch: GuardedConnection

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.watch = guard.admit(transport, self.loop, self._can_answer)

        def connection_lost(self, exc: Exception | None) -> None:
            self.watch.lost()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow_request()

        def on_response_complete(self) -> None:
            # The next request's first byte starts a new header deadline (_follow_request).
            self.watch.between_requests()
            super().on_response_complete()
            self._follow_request()

        def _can_answer(self) -> bool:
            return self.conn.our_state is h11.IDLE

        def _follow_request(self) -> None:
            if self.transport.is_closing():
                return
            watch, state = self.watch, self.conn.their_state
            if state is h11.IDLE:
                if watch.phase in ("body", "app"):
                    # A body that went on arriving after its request was answered is in.
                    watch.between_requests()
                if watch.phase == "idle" and self.conn.trailing_data[0]:
                    watch.awaiting_headers()
            elif state is h11.SEND_BODY:
                if watch.phase != "body":
                    watch.awaiting_body()
            elif watch.phase != "app":
                watch.answering()

    return GuardedH11Protocol
