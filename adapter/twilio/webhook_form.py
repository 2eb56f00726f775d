"""Twilio's messaging webhook form → `InboundMessage`, and the form of a status callback.

Twilio posts application/x-www-form-urlencoded bodies. Everything Twilio-specific about
their fields stays here; the rest of the adapter sees `InboundMessage`.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from twilio.twiml.messaging_response import MessagingResponse

from adapter.twilio.limits import MAX_MEDIA
from adapter.twilio.messages import InboundMessage, Media, Place

# Twilio allows at most MAX_MEDIA (10) media per message; a form claiming more is not Twilio's.
MAX_FIELD_LENGTH = 16_384
# Twilio's messaging webhook has about 20 fields, plus two per media (at most 10) and a
# few per channel (WhatsApp, RCS): far fewer than this. Counted on the raw bytes before
# anything is decoded, so a body of thousands of parameters costs one `bytes.count`.
MAX_PARAMETERS: Final = 200

# A message SID: SM (SMS) or MM (MMS) and 32 lowercase hex digits, exactly. A looser
# check let a captured webhook be replayed as a new text: Twilio's signed string joins
# names and values without separators, so `MessageSid=SM…` + `NumMedia=0` signs the same
# as `MessageSid=SM…NumMedia0`, a "new" SID that passes dedup.
MESSAGE_SID: Final = re.compile(r"(?:SM|MM)[0-9a-f]{32}")
ACCOUNT_SID: Final = re.compile(r"AC[0-9a-f]{32}")
# Fields that repeat the MessageSid in older webhook versions; when present they must agree.
SID_ALIASES: Final = ("SmsMessageSid", "SmsSid")
# Twilio's error codes are five digits; six leave room and still fit every store column.
MAX_ERROR_CODE: Final = 999_999
# The longest status Twilio names ("partially_delivered") with room to spare.
MAX_STATUS_LENGTH: Final = 32

# Twilio waits for this empty TwiML answer; replies go out later through the REST API.
EMPTY_TWIML = str(MessagingResponse()).encode()


class WebhookFormError(ValueError):
    """The form is not a Twilio messaging webhook we can use (answered with 400)."""


def check_form_bytes(body: bytes) -> None:
    """Cheap checks on the raw body, before it is split or decoded: one pass in C.

    Thousands of parameters are costly to split, decode and sort for the signature, and
    Twilio never sends them. (A malformed %-escape is refused by `_unescape`, in C too.)"""
    if body.count(b"&") + 1 > MAX_PARAMETERS:
        raise WebhookFormError(f"more than {MAX_PARAMETERS} parameters")


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """Decode a form body into (name, value) pairs, keeping repeats and blank values:
    what `urllib.parse.parse_qsl(..., keep_blank_values=True, errors="strict")` gives
    (the tests hold it to that), at a fraction of the cost on %-escape-heavy bodies."""
    check_form_bytes(body)
    try:
        return [
            (_unescape(name), _unescape(value))
            for name, _, value in (field.partition(b"=") for field in body.split(b"&") if field)
        ]
    except UnicodeDecodeError:
        raise WebhookFormError("body is not UTF-8") from None
    except ValueError:  # escape_decode on a `%` without two hex digits after it
        raise WebhookFormError("body has a malformed %-escape") from None


def _unescape(raw: bytes) -> str:
    """`+` is a space, `%XX` the byte XX (ValueError if a `%` lacks its two hex digits:
    Twilio never sends one), then UTF-8. `parse_qsl`'s pure-Python unquote took ~4 ms for a 64 KiB body of
    escapes, paid before the signature can be checked; rewriting `%XX` as `\\xXX` lets C
    (`codecs.escape_decode`, what pickle uses) do it ~6x faster. Backslashes are doubled
    first, so only our own `\\x` are escapes."""
    if b"%" not in raw and b"+" not in raw:
        return raw.decode("utf-8")
    escaped = raw.replace(b"\\", b"\\\\").replace(b"+", b" ").replace(b"%", b"\\x")
    decoded: bytes = codecs.escape_decode(escaped)[0]
    return decoded.decode("utf-8")


def parse_decimal(raw: str, name: str, highest: int) -> int:
    """A whole number written in ASCII digits only, from 0 to `highest`.

    `str.isdigit()` also accepts "²" and other digits that `int()` refuses or reads
    differently; the length check keeps a thousand-digit value from being converted."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(highest)):
        raise WebhookFormError(f"{name} is not a whole number from 0 to {highest}")
    value = int(raw)
    if value > highest:
        raise WebhookFormError(f"{name} is not a whole number from 0 to {highest}")
    return value


def _message_sid(form: dict[str, str]) -> str:
    value = form.get("MessageSid", "").strip()
    if not value:
        raise WebhookFormError("missing MessageSid")
    if MESSAGE_SID.fullmatch(value) is None:
        raise WebhookFormError("MessageSid is not a Twilio message SID (SM or MM + 32 hex digits)")
    for alias in SID_ALIASES:
        if alias in form and form[alias].strip() != value:
            raise WebhookFormError(f"{alias} does not match MessageSid")
    return value


def _account_sid(form: dict[str, str]) -> str:
    value = form.get("AccountSid", "").strip()
    if not value:
        raise WebhookFormError("missing AccountSid")
    if ACCOUNT_SID.fullmatch(value) is None:
        raise WebhookFormError("AccountSid is not a Twilio account SID (AC + 32 hex digits)")
    return value


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise WebhookFormError(f"missing {name}")
    return value


def _count(form: dict[str, str], name: str, default: int, highest: int) -> int:
    raw = form.get(name, "").strip()
    if not raw:
        return default
    return parse_decimal(raw, name, highest)


def _optional(form: dict[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def _place(form: dict[str, str], side: str) -> Place:
    return Place(
        city=_optional(form, f"{side}City"),
        state=_optional(form, f"{side}State"),
        zip=_optional(form, f"{side}Zip"),
        country=_optional(form, f"{side}Country"),
    )


def parse_inbound(pairs: Sequence[tuple[str, str]]) -> InboundMessage:
    """Build the typed inbound message; `WebhookFormError` names what is missing or wrong."""
    form: dict[str, str] = {}
    for name, value in pairs:
        if len(value) > MAX_FIELD_LENGTH:
            raise WebhookFormError(f"{name} is too long")
        # Twilio never repeats a field of the messaging webhook; keep the first if it does.
        form.setdefault(name, value)

    num_media = _count(form, "NumMedia", 0, MAX_MEDIA)
    media = []
    for index in range(num_media):
        url = _required(form, f"MediaUrl{index}")
        content_type = (
            form.get(f"MediaContentType{index}", "").strip() or "application/octet-stream"
        )
        media.append(Media(url=url, content_type=content_type))

    return InboundMessage(
        message_sid=_message_sid(form),
        account_sid=_account_sid(form),
        from_=_required(form, "From"),
        to=_required(form, "To"),
        body=form.get("Body", ""),
        messaging_service_sid=_optional(form, "MessagingServiceSid"),
        num_media=num_media,
        num_segments=_count(form, "NumSegments", 1, 1_000),
        media=tuple(media),
        from_place=_place(form, "From"),
        to_place=_place(form, "To"),
        opt_out_type=_optional(form, "OptOutType"),
        profile_name=_optional(form, "ProfileName"),
        wa_id=_optional(form, "WaId"),
        raw=form,
    )


@dataclass(frozen=True)
class StatusCallback:
    message_sid: str
    account_sid: str
    status: str
    error_code: int | None
    to: str | None
    from_: str | None


def parse_status_callback(pairs: Sequence[tuple[str, str]]) -> StatusCallback:
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not status:
        raise WebhookFormError("missing MessageStatus")
    if len(status) > MAX_STATUS_LENGTH or not (
        status.isascii() and status.replace("_", "").isalpha()
    ):
        raise WebhookFormError("MessageStatus is not a message status")
    raw_code = (form.get("ErrorCode") or "").strip()
    return StatusCallback(
        message_sid=_message_sid(form),
        account_sid=_account_sid(form),
        status=status,
        error_code=parse_decimal(raw_code, "ErrorCode", MAX_ERROR_CODE) if raw_code else None,
        to=_optional(form, "To"),
        from_=_optional(form, "From"),
    )
