"""The options of Twilio's Send Message beyond From, To, Body and MediaUrl: one checked value.

`SendOptions(...)` raises `InvalidSendOption` (a ValueError naming the argument) for any
value Twilio would refuse, so a bad option is caught where it is written, never after the
message is queued. The same names are used by `ctx.reply()`, `Channel.send_text`, the
operator API's JSON and a route's `[routes.send]` table:

    validity_period   seconds (1..36,000) or a timedelta: how long the message may wait in
                      the queue before it is not sent (Twilio's ValidityPeriod)
    max_price         a decimal string ("0.05"); MaxPrice, obsolete at Twilio since
                      2024-06-03 (passed on for parity with the connector's action)
    smart_encoded     swap look-alike Unicode characters for GSM-7 ones (SmartEncoded)
    shorten_urls      shorten links (ShortenUrls; Messaging Services only)
    send_as_mms       deliver as one MMS even without media (SendAsMms)
    send_at           an aware datetime: schedule the message (SendAt + ScheduleType=fixed;
                      Messaging Services only, 5 minutes to 35 days ahead)
    content_sid       a Content Template (HX...), e.g. an approved WhatsApp template
    content_variables its variables, a JSON-able dict ({"1": "Ana"})
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

MIN_VALIDITY_SECONDS: Final = 1
MAX_VALIDITY_SECONDS: Final = 36_000
# Twilio schedules a message at least 5 minutes and at most 35 days ahead (error 35114).
MIN_SCHEDULE_AHEAD: Final = timedelta(seconds=300)
MAX_SCHEDULE_AHEAD: Final = timedelta(days=35)

_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
_BOOLEANS = ("smart_encoded", "shorten_urls", "send_as_mms")


class InvalidSendOption(ValueError):
    """A send option Twilio would refuse; the message names the argument."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument


@dataclass(frozen=True)
class SendOptions:
    """Checked send options; every field None means "Twilio's default"."""

    validity_period: int | None = None
    max_price: str | None = None
    smart_encoded: bool | None = None
    shorten_urls: bool | None = None
    send_as_mms: bool | None = None
    send_at: datetime | None = None
    content_sid: str | None = None
    # Left out of the hash (a dict is not hashable), so messages carrying options still are.
    content_variables: dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validity_period", _validity(self.validity_period))
        object.__setattr__(self, "max_price", _price(self.max_price))
        for name in _BOOLEANS:
            value = getattr(self, name)
            if value is not None and not isinstance(value, bool):
                raise InvalidSendOption(name, f"must be True or False, got {value!r}")
        if self.send_at is not None:
            if not isinstance(self.send_at, datetime) or self.send_at.tzinfo is None:
                raise InvalidSendOption(
                    "send_at",
                    "must be an aware datetime (e.g. datetime(2027, 1, 5, 9, 0, tzinfo=UTC)), "
                    f"got {self.send_at!r}",
                )
            # Twilio takes whole seconds in UTC.
            object.__setattr__(self, "send_at", self.send_at.astimezone(UTC).replace(microsecond=0))
        if self.content_sid is not None and (
            not isinstance(self.content_sid, str) or not _CONTENT_SID.fullmatch(self.content_sid)
        ):
            raise InvalidSendOption(
                "content_sid", f"{self.content_sid!r} is not a Content SID (HX and 32 hex digits)"
            )
        if self.content_variables is not None:
            if self.content_sid is None:
                raise InvalidSendOption("content_variables", "needs content_sid (the template)")
            object.__setattr__(self, "content_variables", _variables(self.content_variables))

    @classmethod
    def of(cls, **given: Any) -> SendOptions:
        """Options from what callers may give: seconds or a timedelta, a str or Decimal
        price, any mapping of variables (normalised and checked as they are made)."""
        return cls(**given)

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in SEND_OPTION_NAMES)

    def merged_over(self, defaults: SendOptions) -> SendOptions:
        """These options, with `defaults` filling the ones left unset."""
        given = {name: getattr(self, name) for name in SEND_OPTION_NAMES}
        set_here = {name: value for name, value in given.items() if value is not None}
        # Nothing set here is every plain ctx.reply(): the defaults as they are (immutable).
        return replace(defaults, **set_here) if set_here else defaults

    def check_sender(self, *, messaging_service_sid: str | None, now: datetime) -> None:
        """What depends on the sender and the moment: scheduling and link shortening need
        a Messaging Service, and `send_at` must be in Twilio's window from `now`."""
        if self.shorten_urls and messaging_service_sid is None:
            raise InvalidSendOption(
                "shorten_urls",
                "works only through a Messaging Service (send_via_messaging_service)",
            )
        if self.send_at is None:
            return
        if messaging_service_sid is None:
            raise InvalidSendOption(
                "send_at",
                "Twilio schedules messages only through a Messaging Service: send through "
                "one (send_via_messaging_service, or messaging_service_sid)",
            )
        ahead = self.send_at - now
        if not MIN_SCHEDULE_AHEAD <= ahead <= MAX_SCHEDULE_AHEAD:
            raise InvalidSendOption(
                "send_at",
                f"{self.send_at.isoformat()} is {_describe(ahead)} from now; Twilio schedules "
                "from 5 minutes to 35 days ahead",
            )

    def form(self, *, remaining_validity: int | None = None) -> dict[str, str]:
        """Twilio's form parameters for these options. `remaining_validity` replaces the
        validity period (what is left of it when the message finally goes out)."""
        form: dict[str, str] = {}
        validity = remaining_validity if remaining_validity is not None else self.validity_period
        if validity is not None:
            form["ValidityPeriod"] = str(validity)
        if self.max_price is not None:
            form["MaxPrice"] = self.max_price
        for name, parameter in (
            ("smart_encoded", "SmartEncoded"),
            ("shorten_urls", "ShortenUrls"),
            ("send_as_mms", "SendAsMms"),
        ):
            value = getattr(self, name)
            if value is not None:
                form[parameter] = "true" if value else "false"
        if self.send_at is not None:
            form["ScheduleType"] = "fixed"
            form["SendAt"] = self.send_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.content_sid is not None:
            form["ContentSid"] = self.content_sid
        if self.content_variables is not None:
            form["ContentVariables"] = json.dumps(self.content_variables, ensure_ascii=False)
        return form

    def to_json(self) -> dict[str, Any]:
        """The options that are set, JSON-able (how the outbox keeps them)."""
        data: dict[str, Any] = {}
        for name in SEND_OPTION_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            data[name] = value.isoformat() if isinstance(value, datetime) else value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SendOptions:
        return cls.from_mapping(data, where="") if data else cls()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> SendOptions:
        """Options from a JSON object or a TOML table; unknown names are refused.
        `send_at` may be an ISO 8601 string with an offset."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidSendOption(
                where + ", ".join(unknown),
                f"unknown send option; known: {', '.join(sorted(known))}",
            )
        values = dict(data)
        if isinstance(values.get("send_at"), str):
            values["send_at"] = _parse_time(values["send_at"])
        return cls(**values)


SEND_OPTION_NAMES: Final = tuple(f.name for f in fields(SendOptions))


def _validity(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if seconds != int(seconds):
            raise InvalidSendOption("validity_period", f"{value} is not a whole number of seconds")
        value = int(seconds)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidSendOption(
            "validity_period", f"must be seconds (an int) or a timedelta, got {value!r}"
        )
    if not MIN_VALIDITY_SECONDS <= value <= MAX_VALIDITY_SECONDS:
        raise InvalidSendOption(
            "validity_period",
            f"{value} s is outside Twilio's range of {MIN_VALIDITY_SECONDS} to "
            f"{MAX_VALIDITY_SECONDS:,} seconds (10 hours)",
        )
    return value


def _price(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        value = str(value)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value.strip()):
        raise InvalidSendOption("max_price", f'must be a decimal string like "0.05", got {value!r}')
    try:
        price = Decimal(value.strip())
    except InvalidOperation:
        raise InvalidSendOption("max_price", f"{value!r} is not a decimal") from None
    if price < 0:
        raise InvalidSendOption("max_price", f"{value!r} is negative")
    return value.strip()


def _variables(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidSendOption(
            "content_variables", f'must be a dict like {{"1": "Ana"}}, got {type(value).__name__}'
        )
    for key in value:
        if not isinstance(key, str):
            raise InvalidSendOption("content_variables", f"key {key!r} is not a string")
    try:
        restored: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidSendOption("content_variables", f"cannot be sent as JSON: {error}") from None
    return restored


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSendOption("send_at", f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidSendOption("send_at", f"{text!r} has no UTC offset (add Z or +01:00)")
    return moment


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return f"{-seconds} s in the past, not ahead"
    return f"{seconds} s ahead"
