"""The endpoints Twilio calls: the messaging webhook and the status callback.

Both check Twilio's signature first; nothing unsigned is parsed further, stored or shown
to a bot. The messaging webhook answers only after the text is committed to the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from adapter.logs import LogThrottle, message_fields
from adapter.store.base import StoreError
from adapter.twilio.signature import SIGNATURE_HEADER, SignatureCheck
from adapter.twilio.webhook_form import (
    EMPTY_TWIML,
    WebhookFormError,
    parse_decimal,
    parse_form,
    parse_inbound,
    parse_status_callback,
)
from adapter.web.request_url import external_url
from adapter.web.state import channel_of

if TYPE_CHECKING:
    from adapter.runtime.channel import Channel

logger = logging.getLogger("adapter.webhook")

# Twilio's largest webhook (1,600 characters of %-encoded CJK or emoji, ten media URLs)
# is under 20 KiB. Anything larger is refused from its Content-Length, unread.
MAX_BODY_BYTES = 32 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"


class RequestRejected(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class SignedForm:
    pairs: list[tuple[str, str]]
    check: SignatureCheck | None  # None when validation is turned off


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = parse_decimal(declared.strip(), "Content-Length", 2**63 - 1)
        except WebhookFormError:
            raise RequestRejected(400, "bad Content-Length") from None
        if size > MAX_BODY_BYTES:
            raise RequestRejected(413, "body too large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestRejected(413, "body too large")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_signed_form(channel: Channel, request: Request) -> SignedForm:
    """The form of a request Twilio signed, or RequestRejected with the status to answer.

    Cheapest refusals first, so an unsigned flood costs little: the content type and the
    presence of a signature are known from the headers, before a byte of body is read;
    the body's size and shape are checked on its raw bytes before anything is decoded.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise RequestRejected(415, f"expected {FORM_TYPE}")
    validating = channel.settings.validate_signatures
    if validating and not _plausible_signature(request.headers.get(SIGNATURE_HEADER)):
        missing = SignatureCheck(False, f"missing or malformed {SIGNATURE_HEADER} header", "-")
        _reject_signature(channel, request, missing, "")
    body = await _read_body(request)
    try:
        pairs = parse_form(body)
    except WebhookFormError as error:
        raise RequestRejected(400, str(error)) from None
    if not validating:
        return SignedForm(pairs, None)
    url = external_url(request, channel.settings.public_url, channel.trusted_proxies)
    check = channel.signatures.check(url, pairs, request.headers, body)
    if not check.valid:
        _reject_signature(channel, request, check, url)
    return SignedForm(pairs, check)


def _plausible_signature(value: str | None) -> bool:
    # A base64 HMAC-SHA1 is 28 characters, HMAC-SHA256 44; anything far longer is not one.
    return value is not None and 0 < len(value.strip()) <= 128


def _reject_signature(
    channel: Channel, request: Request, check: SignatureCheck, url: str
) -> NoReturn:
    channel.events.signature_rejected(request.url.path, check)
    # Anyone can post forged webhooks: a flood of them is logged a few lines at a time
    # (one throttle per app), while sms_adapter_signature_rejections_total counts each.
    throttle: LogThrottle = request.app.state.rejection_log
    left_out = throttle.allow()
    if left_out is not None:
        logger.warning(
            "rejected %s from %s: %s (%s, checked against %s)%s",
            request.url.path,
            request.client.host if request.client else "?",
            check.reason,
            check.algorithm,
            _without_credentials(url) if url else "-",
            f"; {left_out} more rejections not logged (see the metrics)" if left_out else "",
        )
    raise RequestRejected(403, "invalid Twilio signature")


def _check_account(channel: Channel, account_sid: str) -> None:
    """A webhook signed with our token but naming another account is not for us: the
    token may be shared with a subaccount's setup, or the form may be a forgery."""
    if account_sid not in channel.accounts:
        logger.warning(
            "rejected a webhook for account %s: not TWILIO_ACCOUNT_SID nor one of "
            "SMS_ADAPTER_SUBACCOUNTS",
            account_sid,
        )
        raise RequestRejected(403, "AccountSid is not this adapter's account")


def _without_credentials(url: str) -> str:
    """A URL safe to log: basic-auth credentials in a webhook URL are secrets."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


async def messaging_webhook(request: Request) -> Response:
    channel = channel_of(request)
    if not channel.accepting:
        return PlainTextResponse("shutting down", status_code=503, headers={"Retry-After": "5"})
    try:
        form = await read_signed_form(channel, request)
        message = parse_inbound(form.pairs)
        _check_account(channel, message.account_sid)
    except RequestRejected as rejected:
        channel.events.inbound("bad_signature" if rejected.status == 403 else "rejected")
        return PlainTextResponse(rejected.reason, status_code=rejected.status)
    except WebhookFormError as error:
        channel.events.inbound("rejected")
        logger.warning("rejected webhook: %s", error)
        return PlainTextResponse(f"not a Twilio messaging webhook: {error}", status_code=400)

    fields = message_fields(message.message_sid, message.conversation)
    try:
        added = await channel.store.add_inbound(
            message.message_sid, str(message.conversation), message.to_json(), message.received_at
        )
    except StoreError:
        # Not acknowledged, so Twilio retries it; nothing is lost.
        logger.exception(
            "could not store text %s; answering 503", message.message_sid, extra=fields
        )
        channel.events.inbound("store_unavailable")
        return PlainTextResponse("temporarily unavailable", status_code=503)

    if added:
        channel.events.inbound("accepted")
        logger.info(
            "text %s accepted (conversation %s)",
            message.message_sid,
            message.conversation,
            extra=fields,
        )
        channel.dispatcher.wake()
    else:
        channel.events.inbound("duplicate")
        logger.info(
            "text %s is a duplicate delivery; already accepted", message.message_sid, extra=fields
        )
    return Response(EMPTY_TWIML, media_type="text/xml")


async def status_callback(request: Request) -> Response:
    channel = channel_of(request)
    try:
        form = await read_signed_form(channel, request)
        update = parse_status_callback(form.pairs)
        _check_account(channel, update.account_sid)
    except RequestRejected as rejected:
        return PlainTextResponse(rejected.reason, status_code=rejected.status)
    except WebhookFormError as error:
        return PlainTextResponse(f"not a Twilio status callback: {error}", status_code=400)
    try:
        await channel.statuses.record(update.message_sid, update.status, update.error_code)
    except StoreError:
        logger.exception(
            "could not record status of %s; answering 503",
            update.message_sid,
            extra=message_fields(update.message_sid),
        )
        return PlainTextResponse("temporarily unavailable", status_code=503)
    return Response(EMPTY_TWIML, media_type="text/xml")
