"""A cap on the size of every request body, in front of every endpoint.

Nothing the adapter serves takes a large body: a Twilio webhook is a few KiB, an
operator's text at most 1,600 characters, a Bot Framework activity a few KiB more. A
client that declares a larger body is answered 413 before any of it is read; one that
streams more than it declared (or sends chunked) is cut off at the cap, so no endpoint
ever holds more than the cap in memory, authenticated or not.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 64 * 1024
# Bot Framework activities carry more than a text (entities, channelData, cards).
CONNECTOR_MAX_BODY_BYTES = 256 * 1024


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodyLimitMiddleware:
    """Caps bodies at `default` bytes, or at the limit of the first matching path prefix."""

    def __init__(
        self, app: ASGIApp, *, default: int, by_prefix: Sequence[tuple[str, int]] = ()
    ) -> None:
        self._app = app
        self._default = default
        self._by_prefix = tuple(by_prefix)

    def limit_for(self, path: str) -> int:
        for prefix, limit in self._by_prefix:
            if path.startswith(prefix):
                return limit
        return self._default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await _refuse(limit, scope, receive, send)
            return
        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the endpoint's read; Starlette answers it with a 413.
                    raise BodyTooLarge(limit)
            return message

        await self._app(scope, capped_receive, send)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # Anything but ASCII digits is for the server to refuse; the read cap still holds.
            if value.isdigit() and len(value) < 20:
                return int(value)
            return None
    return None


async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = PlainTextResponse(
        f"request body larger than {limit} bytes", status_code=413, headers={"Connection": "close"}
    )
    await response(scope, receive, send)


__all__ = [
    "CONNECTOR_MAX_BODY_BYTES",
    "DEFAULT_MAX_BODY_BYTES",
    "BodyLimitMiddleware",
    "BodyTooLarge",
]
