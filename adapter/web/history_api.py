"""The operator API for conversation histories.

    GET /api/conversations/{person}/messages?with={our number}&limit=N&before=...

Guarded like the rest of the operator API (`adapter.web.auth`: 404 without
`SMS_ADAPTER_ADMIN_TOKEN`, 401 with a wrong token). The first page (no `before`) syncs
the conversation with Twilio first; the pages after it read the cache that sync filled,
following the `next` link each page gives until it is null.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapter.history.service import Cursor, conversation_with
from adapter.store.base import StoreError
from adapter.twilio.errors import TwilioError
from adapter.twilio.messages import ConversationKey
from adapter.web.errors import error_response
from adapter.web.state import channel_of

if TYPE_CHECKING:
    from adapter.runtime.channel import Channel

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


def _conversation(channel: Channel, request: Request) -> ConversationKey:
    given = request.query_params.get("with")
    return conversation_with(
        request.path_params["person"],
        _plus_restored(given) if given else None,
        (route.name for route in channel.routes.routes),
    )


def _plus_restored(value: str) -> str:
    # `?with=+15005550006` typed as is arrives as " 15005550006": a query string's "+"
    # means a space. No address starts with a space, so the "+" is what was meant.
    channel = "whatsapp:" if value.startswith("whatsapp:") else ""
    number = value.removeprefix(channel)
    if number.startswith(" ") and number[1:].isascii() and number[1:].isdigit():
        number = "+" + number[1:]
    return channel + number


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def _next_link(key: ConversationKey, limit: int, cursor: Cursor) -> str:
    query = urlencode({"with": key.ours, "limit": limit, "before": str(cursor)})
    return f"/api/conversations/{quote(key.person, safe=':')}/messages?{query}"


async def conversation_messages(request: Request) -> Response:
    channel = channel_of(request)
    try:
        key = _conversation(channel, request)
        limit = _limit(request)
        raw_before = request.query_params.get("before")
        before = Cursor.parse(raw_before) if raw_before else None
    except ValueError as error:
        return error_response(400, str(error))
    try:
        if before is None:
            await channel.history.sync(key)
        messages, next_cursor = await channel.history.read_page(key, limit=limit, before=before)
    except TwilioError as error:
        # Twilio's own words (which call, HTTP status, error code), secrets masked.
        return error_response(502, str(error))
    except StoreError:
        return error_response(503, "the store is unavailable")
    return JSONResponse(
        {
            "with": key.ours,
            "person": key.person,
            "messages": [message.to_json() for message in messages],
            "next": _next_link(key, limit, next_cursor) if next_cursor is not None else None,
        }
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/api/conversations/{person}/messages", conversation_messages, methods=["GET"]),
    ]
