"""The operator API: text a person first, and see what became of it.

Guarded by `adapter.web.auth` (a bearer token, `SMS_ADAPTER_ADMIN_TOKEN`); with no token
configured the API does not exist (404).
"""

from __future__ import annotations

import difflib
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapter.bot.context import InvalidReplyOption, RecipientOptedOut
from adapter.delivery.scheduling import NotScheduled
from adapter.store.base import OutboundRecord, StoreError
from adapter.twilio.addresses import is_address, is_service_sid
from adapter.twilio.errors import TwilioApiError, TwilioError
from adapter.twilio.limits import MAX_BODY_CHARS, MAX_MEDIA
from adapter.twilio.send_options import SEND_OPTION_NAMES, InvalidSendOption, SendOptions
from adapter.web.errors import error_response
from adapter.web.state import channel_of

if TYPE_CHECKING:
    from adapter.runtime.channel import Channel


# What POST /api/messages reads; anything else is refused rather than silently dropped
# (a misspelt "validity_peroid" must not send a text without its validity period).
MESSAGE_KEYS: frozenset[str] = frozenset(
    {"to", "body", "media", "from", "messaging_service_sid", "route", *SEND_OPTION_NAMES}
)


def _unknown_key(data: dict[str, Any]) -> str | None:
    unknown = sorted(str(key) for key in data if key not in MESSAGE_KEYS)
    if not unknown:
        return None
    key = unknown[0]
    close = difflib.get_close_matches(key, sorted(MESSAGE_KEYS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
    return f"unknown key {key!r}{hint}{more}; known keys: {', '.join(sorted(MESSAGE_KEYS))}"


def _validate(data: Any, channel: Channel) -> tuple[dict[str, Any], str | None]:
    if not isinstance(data, dict):
        return {}, "expected a JSON object"
    unknown = _unknown_key(data)
    if unknown is not None:
        return {}, unknown
    to = data.get("to")
    if not isinstance(to, str) or not is_address(to):
        return {}, "to must be an E.164 number such as +15551234567 (or whatsapp:+15551234567)"
    body = data.get("body", "")
    media = data.get("media", [])
    if not isinstance(body, str) or len(body) > MAX_BODY_CHARS:
        return {}, f"body must be text of at most {MAX_BODY_CHARS} characters"
    if (
        not isinstance(media, list)
        or len(media) > MAX_MEDIA
        or not all(isinstance(m, str) and m.startswith(("http://", "https://")) for m in media)
    ):
        return {}, f"media must be a list of at most {MAX_MEDIA} http(s) URLs"
    try:
        options = SendOptions.from_mapping(
            {name: data[name] for name in SEND_OPTION_NAMES if name in data}, where=""
        )
    except InvalidSendOption as error:
        return {}, str(error)
    except TypeError as error:
        return {}, f"a send option has the wrong type: {error}"
    if not body and not media and options.content_sid is None:
        return {}, "body or media is required (or a content_sid)"
    from_ = data.get("from")
    service = data.get("messaging_service_sid")
    route_key = data.get("route")
    if route_key is not None:
        route = channel.routes.resolve(str(route_key), None)
        if route is None:
            return {}, f"no route {route_key!r}"
        if route.send_via_messaging_service is not None or is_address(str(route_key)):
            from_, service = route.reply_sender(str(route_key))
        elif from_ is None and service is None:
            # The default route (`*`) answers texts to any of our numbers: it has no
            # number of its own to send from.
            return {}, f"route {route_key!r} has no number of its own: give from as well"
        # A route's [routes.send] options apply to what is sent in its name.
        options = options.merged_over(route.send_defaults)
    if (from_ is None) == (service is None):
        return {}, "give exactly one of from, messaging_service_sid or route"
    if from_ is not None and (not isinstance(from_, str) or not is_address(from_)):
        return {}, "from must be one of your Twilio numbers in E.164"
    if service is not None and (not isinstance(service, str) or not is_service_sid(service)):
        return {}, "messaging_service_sid must look like MG followed by 32 hex digits"
    return {
        "to": to,
        "body": body,
        "from_": from_,
        "messaging_service_sid": service,
        "media": media,
        "options": options,
    }, None


def _record_json(record: OutboundRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "to": record.payload.get("to"),
        "from": record.payload.get("from_"),
        "messaging_service_sid": record.payload.get("messaging_service_sid"),
        "body": record.payload.get("body"),
        "media": record.payload.get("media_urls", []),
        **record.payload.get("options", {}),
        "state": record.state,
        "attempts": record.attempts,
        "message_sid": record.message_sid,
        "status": record.twilio_status,
        "error_code": record.error_code,
        "error_message": record.error_message,
        "created_at": record.created_at.isoformat(),
    }


async def send_message(request: Request) -> Response:
    channel = channel_of(request)
    try:
        data = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: a body nested thousands deep ([[[[...) is not a message either.
        return error_response(400, "expected a JSON body")
    fields, problem = _validate(data, channel)
    if problem is not None:
        return error_response(400, problem)
    options: SendOptions = fields["options"]
    try:
        outbox_id = await channel.send_text(
            fields["to"],
            fields["body"],
            from_=fields["from_"],
            messaging_service_sid=fields["messaging_service_sid"],
            media=fields["media"],
            **{name: getattr(options, name) for name in SEND_OPTION_NAMES},
        )
    except InvalidReplyOption as refused:
        return error_response(400, str(refused).removeprefix("send_text() "))
    except RecipientOptedOut as refused:
        return error_response(409, str(refused))
    except StoreError:
        return error_response(503, "the store is unavailable; nothing was queued")
    return JSONResponse({"id": outbox_id, "state": "pending"}, status_code=202)


async def get_message(request: Request) -> Response:
    channel = channel_of(request)
    raw_id = request.path_params["outbox_id"]
    # ASCII digits only (isdigit() takes '²'), and short enough for a 64-bit row id.
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:
        return error_response(400, "the id is a number returned by POST /api/messages")
    record = await channel.store.get_outbound(int(raw_id))
    if record is None:
        return error_response(404, "no such message")
    return JSONResponse(_record_json(record))


async def list_dead_letters(request: Request) -> Response:
    channel = channel_of(request)
    records = await channel.store.list_outbound(state="dead", limit=500)
    return JSONResponse({"messages": [_record_json(r) for r in records]})


async def list_scheduled(request: Request) -> Response:
    """Messages Twilio holds until their send_at (status "scheduled"), oldest first."""
    channel = channel_of(request)
    records = await channel.store.list_outbound(twilio_status="scheduled", limit=500)
    return JSONResponse({"messages": [_record_json(r) for r in records]})


async def cancel_message(request: Request) -> Response:
    """Cancel a scheduled message: Twilio is told Status=canceled, and the message's
    status becomes "canceled" (the bot's status handlers hear of it)."""
    channel = channel_of(request)
    raw_id = request.path_params["outbox_id"]
    if not raw_id.isdigit():
        return error_response(400, "the id is a number returned by POST /api/messages")
    try:
        record = await channel.cancel_scheduled(int(raw_id))
    except LookupError:
        return error_response(404, "no such message")
    except NotScheduled as error:
        return error_response(409, str(error))
    except TwilioApiError as error:
        # Twilio refuses once the message is no longer scheduled (sent meanwhile).
        return error_response(409 if error.status < 500 else 502, str(error))
    except TwilioError as error:
        return error_response(502, f"Twilio could not be asked to cancel it: {error}")
    except StoreError:
        return error_response(503, "the store is unavailable")
    return JSONResponse(_record_json(record))


def routes() -> list[BaseRoute]:
    return [
        Route("/api/messages", send_message, methods=["POST"]),
        Route("/api/messages/dead", list_dead_letters, methods=["GET"]),
        Route("/api/messages/scheduled", list_scheduled, methods=["GET"]),
        Route("/api/messages/{outbox_id}", get_message, methods=["GET"]),
        Route("/api/messages/{outbox_id}", cancel_message, methods=["DELETE"]),
    ]
