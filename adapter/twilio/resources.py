"""Twilio's Message resource as the REST API returns it, and its date format.

Twilio documents every Message field as nullable, sends counts as strings and adds
fields without notice, so parsing is lenient: a missing or malformed field becomes its
empty value and the whole JSON object is kept in `raw`. Only `sid` is required, since a
message that cannot be named cannot be tracked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any


def format_rfc2822(moment: datetime) -> str:
    """Format an aware datetime the way Twilio does: "Thu, 30 Jul 2015 20:12:31 +0000"."""
    if moment.tzinfo is None:
        # A naive datetime could be local time or UTC; guessing would shift the clock.
        raise ValueError("format_rfc2822 needs an aware datetime (e.g. datetime.now(UTC))")
    return format_datetime(moment.astimezone(UTC))


# How Twilio writes every date ("Thu, 30 Jul 2015 20:12:31 +0000"), read without the
# general parser: three of these per reply sent, where `parsedate_to_datetime` was a
# fiftieth of the adapter's CPU.
_TWILIO_DATE = re.compile(
    r"[A-Z][a-z]{2}, (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) \+0000"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}


def parse_rfc2822(text: object) -> datetime | None:
    """Parse an RFC 2822 timestamp to an aware UTC datetime; None if absent or unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    twilio = _TWILIO_DATE.fullmatch(text)
    if twilio is not None and twilio[2] in _MONTHS:
        day, month, year, hour, minute, second = twilio.groups()
        try:
            return datetime(
                int(year),
                _MONTHS[month],
                int(day),
                int(hour),
                int(minute),
                int(second),
                tzinfo=UTC,
            )
        except ValueError:
            return None  # 31 Feb and the like, which the general parser refuses too
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        # RFC 2822 "-0000" means UTC with no claim about local time; Python leaves it naive.
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class MessageResource:
    """One Message as Twilio reports it (send, fetch or list)."""

    sid: str
    account_sid: str
    from_: str | None
    to: str
    body: str
    status: str
    direction: str
    num_segments: int
    num_media: int
    error_code: int | None
    error_message: str | None
    messaging_service_sid: str | None
    date_created: datetime | None
    date_sent: datetime | None
    date_updated: datetime | None
    price: str | None
    price_unit: str | None
    uri: str | None
    # Everything Twilio sent, verbatim, for fields this class does not name.
    raw: dict[str, Any] = field(default_factory=dict, repr=False, hash=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MessageResource:
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid:
            raise ValueError("Twilio's Message JSON has no sid")
        return cls(
            sid=sid,
            account_sid=_text(data.get("account_sid")),
            from_=_optional_text(data.get("from")),
            to=_text(data.get("to")),
            body=_text(data.get("body")),
            status=_text(data.get("status")),
            direction=_text(data.get("direction")),
            num_segments=_integer(data.get("num_segments")) or 0,
            num_media=_integer(data.get("num_media")) or 0,
            error_code=_integer(data.get("error_code")),
            error_message=_optional_text(data.get("error_message")),
            messaging_service_sid=_optional_text(data.get("messaging_service_sid")),
            date_created=parse_rfc2822(data.get("date_created")),
            date_sent=parse_rfc2822(data.get("date_sent")),
            date_updated=parse_rfc2822(data.get("date_updated")),
            price=_price(data.get("price")),
            price_unit=_optional_text(data.get("price_unit")),
            uri=_optional_text(data.get("uri")),
            raw=dict(data),
        )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _price(value: object) -> str | None:
    # Twilio sends prices as decimal strings ("-0.00750"); keep a stray number exact too.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _optional_text(value)


def _integer(value: object) -> int | None:
    # bool is an int subclass; Twilio never means a count or a code by true/false.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
