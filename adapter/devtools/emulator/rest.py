"""Twilio's REST API for Messages: Send, Fetch and List, with Twilio's auth and errors."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from adapter.devtools.emulator import errors, media, numbers, services
from adapter.devtools.emulator.callbacks import notify, run_outbound
from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.connection import drop_connection
from adapter.devtools.emulator.errors import TwilioApiError
from adapter.devtools.emulator.faults import Fault
from adapter.devtools.emulator.forms import Form, read_form
from adapter.devtools.emulator.listing import ListRequest, list_messages
from adapter.devtools.emulator.opt_outs import refuse_if_unsubscribed
from adapter.devtools.emulator.resource import message_json
from adapter.devtools.emulator.send_options import (
    RequestedOptions,
    read_options,
    rendered_template,
)
from adapter.devtools.emulator.signing import Signer
from adapter.devtools.emulator.state import OUTBOUND_API, EmulatorState, media_at
from adapter.twilio.addresses import is_address, number_of, on_channel_of, same_channel
from adapter.twilio.client import API_VERSION
from adapter.twilio.limits import MAX_BODY_CHARS, MAX_MEDIA
from adapter.twilio.smart_encoding import smart_encode

RETRY_AFTER_SECONDS = 1

Handler = Callable[[Request], Awaitable[Response]]

_GET = frozenset({"GET", "HEAD"})
_GET_POST = _GET | {"POST"}
_GET_DELETE = _GET | {"DELETE"}
_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]


class HangUp(Response):
    """Answers by dropping the connection (see `connection.drop_connection`)."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await drop_connection(send)


class RestApi:
    def __init__(
        self,
        config: EmulatorConfig,
        state: EmulatorState,
        signer: Signer,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.state = state
        self.signer = signer
        self.rng = rng

    def routes(self) -> list[BaseRoute]:
        """Each resource answers every method: one it does not have gets Twilio's 405
        (20004), not Starlette's plain text, nor the catch-all's 404."""
        account = f"/{API_VERSION}/Accounts/{{account_sid}}"
        message = f"{account}/Messages/{{sid}}"
        resources: list[tuple[str, Handler, frozenset[str]]] = [
            (f"{account}/Messages.json", self.messages, _GET_POST),
            (f"{message}.json", self.message, _GET_POST),
            (f"{account}.json", self.account, _GET),
            (f"{account}/IncomingPhoneNumbers.json", self.incoming_numbers, _GET),
            (f"{message}/Media.json", self.media_list, _GET),
            (f"{message}/Media/{{media_sid}}.json", self.media_resource, _GET_DELETE),
            (f"{message}/Media/{{media_sid}}", self.media_file, _GET),
            (f"{services.SERVICES_PATH}/{{service_sid}}", self.service, _GET),
            (f"{services.SERVICES_PATH}/{{service_sid}}/PhoneNumbers", self.service_numbers, _GET),
        ]
        return [
            *(
                Route(path, self._allowing(allowed, handler), methods=_EVERY_METHOD)
                for path, handler, allowed in resources
            ),
            # Anything else under the API answers like Twilio, not with Starlette's text 404.
            Route(f"/{API_VERSION}/{{rest:path}}", self.unknown, methods=_EVERY_METHOD),
        ]

    def _allowing(self, allowed: frozenset[str], endpoint: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if request.method in allowed:
                return await endpoint(request)
            return await self._answer(
                request, lambda r: _not_allowed(allowed), account_scoped=False
            )

        return guarded

    # -- endpoints ----------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        handler = self._create if request.method == "POST" else self._list
        return await self._answer(request, handler, account_scoped=True)

    async def message(self, request: Request) -> Response:
        handler = self._update if request.method == "POST" else self._fetch
        return await self._answer(request, handler, account_scoped=True)

    async def unknown(self, request: Request) -> Response:
        return await self._answer(request, _not_found, account_scoped=False)

    async def account(self, request: Request) -> Response:
        """Fetch Account (see `numbers`)."""
        return await self._answer(
            request, lambda r: numbers.fetch_account(self.config, r), account_scoped=True
        )

    async def media_file(self, request: Request) -> Response:
        """A media file of a text a person sent: a redirect to its content (see `media`)."""
        return await self._answer(
            request, lambda r: media.redirect_to_content(self.state, r), account_scoped=True
        )

    async def media_list(self, request: Request) -> Response:
        """List Media of a message (see `media`)."""
        return await self._answer(
            request,
            lambda r: media.list_media(self.state, self.config.account_sid, r),
            account_scoped=True,
        )

    async def media_resource(self, request: Request) -> Response:
        """Fetch or Delete one Media resource of a message (see `media`)."""
        if request.method == "DELETE":
            handler: Handler = lambda r: media.delete_media(self.state, r)  # noqa: E731
        else:
            handler = lambda r: media.fetch_media(self.state, self.config.account_sid, r)  # noqa: E731
        return await self._answer(request, handler, account_scoped=True)

    async def incoming_numbers(self, request: Request) -> Response:
        """The IncomingPhoneNumbers list (see `numbers`)."""
        return await self._answer(
            request, lambda r: numbers.list_incoming_numbers(self.config, r), account_scoped=True
        )

    async def service(self, request: Request) -> Response:
        """Fetch Service, of the Messaging API (see `services`)."""
        return await self._answer(
            request, lambda r: services.fetch_service(self.config, r), account_scoped=False
        )

    async def service_numbers(self, request: Request) -> Response:
        """A Messaging Service's PhoneNumbers list (see `services`)."""
        return await self._answer(
            request, lambda r: services.list_service_numbers(self.config, r), account_scoped=False
        )

    async def _answer(
        self, request: Request, handler: Handler, *, account_scoped: bool
    ) -> Response:
        try:
            self._authenticate(request)
            if account_scoped and request.path_params["account_sid"] != self.config.account_sid:
                raise errors.not_found(request.url.path)
            response = await handler(request)
        except TwilioApiError as error:
            response = error.response()
        await asyncio.sleep(self.config.latency_ms / 1000)
        return response

    def _refuse_if(self, fault: Fault | None) -> None:
        """Answer 429 or 500 (and do nothing) if that is the fault drawn."""
        if fault is Fault.TOO_MANY_REQUESTS:
            raise TwilioApiError(
                429,
                errors.TOO_MANY_REQUESTS,
                "Too Many Requests",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        if fault is Fault.SERVER_ERROR:
            raise TwilioApiError(500, errors.INTERNAL_ERROR, "Internal Server Error")

    async def _create(self, request: Request) -> Response:
        fault = self.config.faults.choose(self.rng)
        self._refuse_if(fault)
        try:
            form = await read_form(request)
        except ValueError as error:
            raise TwilioApiError(400, errors.INVALID_PARAMETER, str(error)) from None
        message = self._validated(form)
        refuse_if_unsubscribed(
            self.state.opt_outs,
            self.config,
            message.to,
            message.from_,
            message.messaging_service_sid,
        )
        options = message.options
        body = rendered_template(self.config, options)
        if body is None:
            body = message.body
        if options.smart_encoded:
            body = smart_encode(body)
        if options.send_at is not None:
            status = "scheduled"
        else:
            status = "accepted" if message.from_ is None else "queued"
        from_ = message.from_
        if options.send_at is not None and from_ is None:
            # The emulator picks a scheduled message's sender when it is made, so lists of
            # a number's messages (history) show it while it waits.
            from_ = on_channel_of(
                self.config.service_sender(message.messaging_service_sid), message.to
            )
        stored = self.state.add_message(
            direction=OUTBOUND_API,
            from_=from_,
            to=message.to,
            body=body,
            status=status,
            media=[media_at(url) for url in message.media_urls],
            messaging_service_sid=message.messaging_service_sid,
            # Twilio: StatusCallback wins over the TwiML App's status callback URL.
            status_callback=message.status_callback or options.application_callback,
            options=options.resource_fields(),
            validity_period=options.validity_period,
            send_at=options.send_at,
        )
        for file in stored.media:
            self.state.media.host(stored.sid, file, stored.date_created)
        # How long the message sits in the queue: the emulator's latency, and a slow
        # answer's delay (its validity period runs meanwhile).
        held_ms = self.config.latency_ms + (
            self.config.faults.slow_ms if fault is Fault.SLOW else 0
        )
        self.state.spawn(
            run_outbound(self.state, self.config, self.signer, stored.sid, held_ms=held_ms),
            name=f"emulator-outbound-{stored.sid}",
        )
        if fault is Fault.DROP:
            return HangUp()
        if fault is Fault.SLOW:
            await asyncio.sleep(self.config.faults.slow_ms / 1000)
        return JSONResponse(message_json(stored, self.config.account_sid), status_code=201)

    async def _update(self, request: Request) -> Response:
        """Update Message: Status=canceled cancels a scheduled message (the only update
        the emulator knows)."""
        message = self.state.get(request.path_params["sid"])
        if message is None:
            raise errors.not_found(request.url.path)
        try:
            form = await read_form(request)
        except ValueError as error:
            raise TwilioApiError(400, errors.INVALID_PARAMETER, str(error)) from None
        status = form.get("Status", "").strip()
        if status != "canceled":
            raise TwilioApiError(
                400, errors.INVALID_PARAMETER, f"Invalid parameter: Status {status!r}"
            )
        if message.status != "scheduled":
            raise TwilioApiError(
                400,
                errors.NOT_CANCELABLE,
                f"Message {message.sid} is {message.status}, not scheduled: it cannot be canceled.",
            )
        canceled = self.state.set_status(message.sid, "canceled")
        assert canceled is not None
        self.state.spawn(
            notify(self.state, self.config, self.signer, canceled),
            name=f"emulator-canceled-{canceled.sid}",
        )
        return JSONResponse(message_json(canceled, self.config.account_sid))

    async def _fetch(self, request: Request) -> Response:
        message = self.state.get(request.path_params["sid"])
        if message is None:
            raise errors.not_found(request.url.path)
        return JSONResponse(message_json(message, self.config.account_sid))

    async def _list(self, request: Request) -> Response:
        if self.config.faults.lists:
            self._refuse_if(self.config.faults.choose(self.rng))
        query = ListRequest.from_query(request.query_params)
        return JSONResponse(list_messages(self.state.messages(), query, self.config.account_sid))

    # -- rules --------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        username, password = _basic_credentials(request.headers.get("authorization", ""))
        if username == self.config.account_sid:
            expected: str | None = self.config.auth_token
        else:
            expected = self.config.api_keys.get(username)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            raise _unauthorized()

    def _validated(self, form: Form) -> _SendRequest:
        to = _text(form, "To")
        from_ = _text(form, "From") or None
        service = _text(form, "MessagingServiceSid") or None
        # Twilio sends the body exactly as given, surrounding whitespace included.
        body = form.get("Body", "")
        media_urls = [url for url in form.getlist("MediaUrl") if url]
        if not to:
            raise TwilioApiError(400, errors.TO_REQUIRED, "A 'To' phone number is required.")
        if not is_address(to):
            raise TwilioApiError(
                400, errors.TO_INVALID, f"The 'To' number {to} is not a valid phone number."
            )
        if from_ is None and service is None:
            raise TwilioApiError(400, errors.FROM_REQUIRED, "A 'From' phone number is required.")
        if from_ is not None and not self.config.owns(number_of(from_)):
            raise TwilioApiError(
                400,
                errors.FROM_NOT_OURS,
                f"The From phone number {from_} is not a valid, SMS-capable inbound phone "
                "number or short code for your account.",
            )
        if from_ is not None and not same_channel(from_, to):
            raise TwilioApiError(
                400,
                errors.CHANNEL_MISMATCH,
                "Invalid From and To pair. From and To should be of the same channel",
            )
        options = read_options(
            form, self.config, messaging_service_sid=service, now=self.state.clock()
        )
        if not body and not media_urls and options.content_sid is None:
            raise TwilioApiError(400, errors.BODY_REQUIRED, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise TwilioApiError(
                400,
                errors.BODY_TOO_LONG,
                f"The concatenated message body exceeds the {MAX_BODY_CHARS} character limit.",
            )
        if len(media_urls) > MAX_MEDIA:
            raise TwilioApiError(
                400, errors.TOO_MANY_MEDIA, "Number of media files exceeds allowed limit."
            )
        return _SendRequest(
            to=to,
            from_=from_,
            messaging_service_sid=service,
            body=body,
            media_urls=media_urls,
            status_callback=_text(form, "StatusCallback") or None,
            options=options,
        )


@dataclass(frozen=True)
class _SendRequest:
    to: str
    from_: str | None
    messaging_service_sid: str | None
    body: str
    media_urls: list[str]
    status_callback: str | None
    options: RequestedOptions


async def _not_found(request: Request) -> Response:
    raise errors.not_found(request.url.path)


async def _not_allowed(allowed: frozenset[str]) -> Response:
    raise TwilioApiError(
        405,
        errors.METHOD_NOT_ALLOWED,
        "Method not allowed",
        {"Allow": ", ".join(sorted(allowed))},
    )


def _unauthorized() -> TwilioApiError:
    return TwilioApiError(
        401,
        errors.AUTHENTICATE,
        "Authenticate",
        {"WWW-Authenticate": 'Basic realm="Twilio API"'},
    )


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized() from None
    username, separator, password = decoded.partition(":")
    if not separator:
        raise _unauthorized()
    return username, password


def _text(form: Form, name: str) -> str:
    return form.get(name, "").strip()
