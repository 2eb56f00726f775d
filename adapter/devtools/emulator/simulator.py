"""The emulator's own dev-tool endpoints (no auth): a person texting in, every message at
a glance, and long seeded histories.

    POST   /_emulator/inbound   JSON or form: From, To?, Body?, MediaUrl*, MediaContentType*,
                                ProfileName?, MessagingServiceSid?; or MessageSid to post the
                                webhook of an earlier inbound text again (a duplicate delivery)
    GET    /_emulator/messages  every message, oldest first; ?to= / ?from= filter
    DELETE /_emulator/messages  forget every message
    POST   /_emulator/seed      JSON: ours, person, count, start? (ISO), interval_seconds?
    GET    /_emulator/clock     the emulator's time: {"now": ISO 8601}
    POST   /_emulator/clock     JSON or form: advance_seconds: move the clock forward, so
                                scheduled messages come due and queued ones age (tests)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.forms import read_form
from adapter.devtools.emulator.inbound import post_inbound
from adapter.devtools.emulator.media import data_url_type, hosted_media
from adapter.devtools.emulator.opt_outs import AUTO_REPLY_DIRECTION, auto_reply
from adapter.devtools.emulator.resource import message_json
from adapter.devtools.emulator.signing import Signer
from adapter.devtools.emulator.state import (
    INBOUND,
    EmulatorState,
    StoredMessage,
    media_at,
    new_sid,
)
from adapter.twilio.addresses import (
    WHATSAPP_PREFIX,
    is_address,
    is_whatsapp,
    number_of,
    on_channel_of,
    same_channel,
)
from adapter.twilio.limits import MAX_MEDIA
from adapter.twilio.messages import Media

MAX_SEED = 1_000_000
MAX_ADVANCE_SECONDS = 366 * 86_400  # past the longest schedule (35 days), not to overflow
DEFAULT_PROFILE_NAME = "WhatsApp User"

Params = dict[str, list[str]]


class SimulationError(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self)}, status_code=self.status)


class Simulator:
    def __init__(self, config: EmulatorConfig, state: EmulatorState, signer: Signer) -> None:
        self.config = config
        self.state = state
        self.signer = signer

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/_emulator/inbound", self.inbound, methods=["POST"]),
            Route("/_emulator/messages", self.messages, methods=["GET", "DELETE"]),
            Route("/_emulator/seed", self.seed, methods=["POST"]),
            Route("/_emulator/clock", self.clock, methods=["GET", "POST"]),
        ]

    async def clock(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                seconds = _advance_seconds(await _params(request))
            except SimulationError as error:
                return error.response()
            now = self.state.advance(timedelta(seconds=seconds))
        else:
            now = self.state.clock()
        return JSONResponse({"now": now.isoformat()})

    async def inbound(self, request: Request) -> Response:
        try:
            message = self._inbound_message(await _params(request), str(request.base_url))
        except SimulationError as error:
            return error.response()
        outcome = await post_inbound(self.state, self.config, self.signer, message)
        return JSONResponse({"sid": message.sid, **outcome.to_json()})

    async def messages(self, request: Request) -> Response:
        if request.method == "DELETE":
            return JSONResponse({"cleared": self.state.clear()})
        to, from_ = (_address_param(request.query_params.get(name)) for name in ("to", "from"))
        shown = [
            self._console_json(m)
            for m in self.state.messages()
            if (to is None or m.to == to) and (from_ is None or m.from_ == from_)
        ]
        return JSONResponse(shown)

    async def seed(self, request: Request) -> Response:
        try:
            data = await _json_object(request)
            seeded = self.state.seed_conversation(
                _address(data, "ours"),
                _address(data, "person"),
                _count(data),
                start=_start(data),
                interval=_interval(data),
            )
        except SimulationError as error:
            return error.response()
        return JSONResponse(
            {
                "created": len(seeded),
                "oldest": seeded[0].date_created.isoformat() if seeded else None,
                "newest": seeded[-1].date_created.isoformat() if seeded else None,
            }
        )

    def _inbound_message(self, params: Params, base_url: str) -> StoredMessage:
        redelivered = _one(params, "MessageSid").strip()
        if redelivered:
            message = self.state.get(redelivered)
            if message is None or message.direction != INBOUND:
                raise SimulationError(f"no inbound message {redelivered}", status=404)
            return message
        sender = _address_param(_one(params, "From")) or ""
        if not sender:
            raise SimulationError("From is required")
        if not is_address(sender):
            raise SimulationError(f"From {sender!r} is not +E.164 or whatsapp:+E.164")
        to = _address_param(_one(params, "To")) or on_channel_of(self.config.numbers[0], sender)
        if not is_address(to) or not self.config.owns(number_of(to)):
            numbers = ", ".join(self.config.numbers)
            raise SimulationError(f"To {to!r} is not one of the emulated numbers ({numbers})")
        if not same_channel(sender, to):
            raise SimulationError("From and To must be on the same channel (SMS or WhatsApp)")
        urls = params.get("MediaUrl", [])
        types = params.get("MediaContentType", [])
        if types and len(types) != len(urls):
            raise SimulationError("give one MediaContentType per MediaUrl, or none")
        if len(urls) > MAX_MEDIA:
            raise SimulationError(f"at most {MAX_MEDIA} MediaUrl")
        profile = _one(params, "ProfileName") or (
            DEFAULT_PROFILE_NAME if is_whatsapp(sender) else None
        )
        now = self.state.clock()
        # Like Twilio, the webhook links to the emulator's copy of each file (see `media`).
        sid = new_sid(bool(urls))
        media = [
            hosted_media(self.state, sid, source, base_url, self.config.account_sid)
            for source in _sources(urls, types)
        ]
        body = _one(params, "Body")
        self.state.opt_outs.note_inbound(to, sender, body)
        message = self.state.add_message(
            direction=INBOUND,
            from_=sender,
            to=to,
            body=body,
            status="received",
            media=media,
            messaging_service_sid=_one(params, "MessagingServiceSid").strip()
            or self.config.service_of(number_of(to)),
            profile_name=profile,
            date_created=now,
            date_sent=now,
            sid=sid,
        )
        self._answer_keyword(message)
        return message

    def _answer_keyword(self, text: StoredMessage) -> None:
        """Twilio's own answer to STOP, START or HELP, from the number texted."""
        answer = auto_reply(text.from_ or "", text.body)
        if answer is None:
            return
        self.state.add_message(
            direction=AUTO_REPLY_DIRECTION,
            from_=text.to,
            to=text.from_ or "",
            body=answer,
            status="delivered",
            messaging_service_sid=text.messaging_service_sid,
            date_created=text.date_created,
            date_sent=text.date_created,
        )

    def _console_json(self, message: StoredMessage) -> dict[str, Any]:
        # Twilio's Message JSON has no media URLs (they are a subresource); the console
        # wants them inline.
        media = [{"url": m.url, "content_type": m.content_type} for m in message.media]
        return {**message_json(message, self.config.account_sid), "media": media}


async def _params(request: Request) -> Params:
    if request.headers.get("content-type", "").startswith("application/json"):
        data = await _json_object(request)
        params: Params = {}
        for name, value in data.items():
            values = value if isinstance(value, list) else [value]
            params[name] = [str(v) for v in values if v is not None]
        return params
    try:
        form = await read_form(request)
    except ValueError as error:
        raise SimulationError(str(error)) from None
    return {name: form.getlist(name) for name in form.keys()}


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, RecursionError):
        raise SimulationError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise SimulationError("the body is not a JSON object")
    return data


def _address_param(value: str | None) -> str | None:
    """A phone address from a form or query string; None if blank. `curl -d From=+1555...`
    sends the "+" raw, which form decoding reads as a space: put it back."""
    if value is None or not value.strip():
        return None
    channel = WHATSAPP_PREFIX if value.startswith(WHATSAPP_PREFIX) else ""
    number = value.removeprefix(channel)
    if number.startswith(" ") and number[1:].isascii() and number[1:].isdigit():
        number = "+" + number[1:]
    return channel + number.strip()


def _sources(urls: list[str], types: list[str]) -> list[Media]:
    """The files a person sends: each URL with its given type, else the type a data: URL
    declares, else one guessed from the URL's extension."""
    return [media_at(url, types[i] if types else data_url_type(url)) for i, url in enumerate(urls)]


def _one(params: Params, name: str) -> str:
    values = params.get(name)
    return values[0] if values else ""


def _address(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not is_address(value):
        raise SimulationError(f"{name} must be +E.164 or whatsapp:+E.164")
    return value


def _count(data: dict[str, Any]) -> int:
    count = data.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_SEED:
        raise SimulationError(f"count must be a whole number from 0 to {MAX_SEED}")
    return count


def _start(data: dict[str, Any]) -> datetime | None:
    start = data.get("start")
    if start is None:
        return None
    try:
        return datetime.fromisoformat(str(start))
    except ValueError:
        raise SimulationError(f"start {start!r} is not an ISO 8601 datetime") from None


def _advance_seconds(params: Params) -> float:
    text = _one(params, "advance_seconds").strip()
    try:
        seconds = float(text)
    except ValueError:
        raise SimulationError("advance_seconds must be a number of seconds") from None
    if not 0 <= seconds <= MAX_ADVANCE_SECONDS:
        raise SimulationError(f"advance_seconds must be from 0 to {MAX_ADVANCE_SECONDS:,}")
    return seconds


def _interval(data: dict[str, Any]) -> timedelta | None:
    seconds = data.get("interval_seconds")
    if seconds is None:
        return None
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
        raise SimulationError("interval_seconds must be a positive number")
    return timedelta(seconds=seconds)
