"""Twilio's messaging webhook form → `InboundMessage`, and the form of a status callback.

Twilio posts application/x-www-form-urlencoded bodies. Everything Twilio-specific about
their fields stays here; the rest of the adapter sees `InboundMessage`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from twilio.twiml.messaging_response import MessagingResponse

from adapter.twilio.limits import MAX_MEDIA
from adapter.twilio.messages import InboundMessage, Media, Place

# Twilio allows at most MAX_MEDIA (10) media per message; a form claiming more is not Twilio's.
MAX_FIELD_LENGTH = 16_384

# Twilio waits for this empty TwiML answer; replies go out later through the REST API.
EMPTY_TWIML = str(MessagingResponse()).encode()


class WebhookFormError(ValueError):
    """The form is not a Twilio messaging webhook we can use (answered with 400)."""


def parse_form(body: bytes) -> list[tuple[str, str]]:
    """Decode a form body into (name, value) pairs, keeping repeats and blank values."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookFormError("body is not UTF-8") from None
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (ValueError, UnicodeDecodeError) as error:
        raise WebhookFormError(f"body is not a valid form: {error}") from None


def _sid(form: dict[str, str], name: str, prefixes: tuple[str, ...]) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise WebhookFormError(f"missing {name}")
    if not value.startswith(prefixes) or len(value) > 64 or not value.isalnum():
        raise WebhookFormError(f"{name} is not a Twilio SID")
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
    if not raw.isdigit() or int(raw) > highest:
        raise WebhookFormError(f"{name} is not a count")
    return int(raw)


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
        message_sid=_sid(form, "MessageSid", ("SM", "MM", "IM")),
        account_sid=_sid(form, "AccountSid", ("AC",)),
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
    status: str
    error_code: int | None
    to: str | None
    from_: str | None


def parse_status_callback(pairs: Sequence[tuple[str, str]]) -> StatusCallback:
    form = dict(pairs)
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    if not status:
        raise WebhookFormError("missing MessageStatus")
    raw_code = (form.get("ErrorCode") or "").strip()
    if raw_code and not raw_code.isdigit():
        raise WebhookFormError("ErrorCode is not a number")
    return StatusCallback(
        message_sid=_sid(form, "MessageSid", ("SM", "MM", "IM")),
        status=status,
        error_code=int(raw_code) if raw_code else None,
        to=_optional(form, "To"),
        from_=_optional(form, "From"),
    )
