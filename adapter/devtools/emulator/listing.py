"""List Messages: Twilio's filters, newest-first order, and token paging.

Filters. `To` and `From` match exactly. The `DateSent` family filters by UTC day, as
Twilio documents ("Accepts GMT dates"): `DateSent=D` is that day; `DateSent<=D` (sent as
the parameter `DateSent<` with value D) is on or before D, that whole day included;
`DateSent>=D` (`DateSent>`) is on or after D. A value with a time of day (the twilio
library sends dates as "2024-01-02T00:00:00Z") counts as its UTC day. Every format of
Twilio's API description is read: "2019-06-11", "2019-06-11 22:05:25.000" (UTC),
"Wed, 19 Jun 2019 22:04:00 -0000" and "06/11/2019 22:05:25 MST" (month first, with a US
zone's abbreviation or a numeric offset). A message not yet sent is dated by its
creation, the same time it is sorted by.

Order and paging. Newest first by date_sent, falling back to date_created, ties broken by
arrival. A next-page token ("PA...") encodes the sort position of the last message shown
(not an offset), and a previous-page token ("PB...") that of the first, so texts arriving
while a client walks the pages neither repeat on nor push messages off the pages still to
come. (A queued text that gets sent meanwhile does move, to its date_sent.) PageSize
above 1000 reads as 1000: the twilio library asks for `page_size=limit` when only given
a limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlencode

from adapter.devtools.emulator.errors import INVALID_PARAMETER, TwilioApiError
from adapter.devtools.emulator.resource import account_uri, message_json
from adapter.devtools.emulator.state import StoredMessage
from adapter.twilio.client import MAX_PAGE_SIZE
from adapter.twilio.resources import parse_rfc2822

DEFAULT_PAGE_SIZE = 50
# Filter parameters in the order Twilio echoes them in page URIs.
FILTER_NAMES = ("To", "From", "DateSent", "DateSent<", "DateSent>")

_TOKEN = re.compile(r"(PA|PB)(-?[0-9]+)_([0-9]+)")
# "06/11/2019 22:05:25 MST": month/day/year, an optional time, an optional zone.
_US_DATE = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?(?:\s+(\S+))?"
)
# The zone abbreviations a US-style date may carry, as hours from UTC.
_ZONES = {
    "UTC": 0, "GMT": 0, "Z": 0,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6,
    "PST": -8, "PDT": -7, "AKST": -9, "AKDT": -8, "HST": -10,
}  # fmt: skip

SortKey = tuple[int, int]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def sort_key(message: StoredMessage) -> SortKey:
    return ((message.listed_at - _EPOCH) // _MICROSECOND, message.seq)


@dataclass(frozen=True)
class PageToken:
    after: bool  # PA: the messages after (older than) `key`; PB: those before it
    key: SortKey

    def __str__(self) -> str:
        return f"{'PA' if self.after else 'PB'}{self.key[0]}_{self.key[1]}"

    @classmethod
    def parse(cls, text: str) -> PageToken:
        match = _TOKEN.fullmatch(text)
        if match is None:
            raise _invalid("PageToken", text)
        return cls(after=match[1] == "PA", key=(int(match[2]), int(match[3])))


@dataclass(frozen=True)
class ListRequest:
    filters: tuple[tuple[str, str], ...]  # as given, for the page URIs
    to: str | None
    from_: str | None
    on: date | None
    on_or_before: date | None
    on_or_after: date | None
    page_size: int
    page: int
    token: PageToken | None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListRequest:
        filters = tuple((name, query[name]) for name in FILTER_NAMES if query.get(name))
        given = dict(filters)
        token_text = query.get("PageToken")
        page, page_size = paging(query)
        return cls(
            filters=filters,
            to=given.get("To"),
            from_=given.get("From"),
            on=_day(given, "DateSent"),
            on_or_before=_day(given, "DateSent<"),
            on_or_after=_day(given, "DateSent>"),
            page_size=page_size,
            page=page,
            token=PageToken.parse(token_text) if token_text else None,
        )

    def matches(self, message: StoredMessage) -> bool:
        if self.to is not None and message.to != self.to:
            return False
        if self.from_ is not None and message.from_ != self.from_:
            return False
        day = message.listed_at.astimezone(UTC).date()
        return (
            (self.on is None or day == self.on)
            and (self.on_or_before is None or day <= self.on_or_before)
            and (self.on_or_after is None or day >= self.on_or_after)
        )

    def uri(self, account_sid: str, page: int, token: PageToken | None) -> str:
        params: list[tuple[str, str | int]] = [*self.filters]
        params += [("PageSize", self.page_size), ("Page", page)]
        if token is not None:
            params.append(("PageToken", str(token)))
        return f"{account_uri(account_sid)}/Messages.json?{urlencode(params)}"


def paging(query: Mapping[str, str]) -> tuple[int, int]:
    """`Page` and `PageSize` as every Twilio list reads them (20001 if unreadable)."""
    page_size = _integer(query, "PageSize", DEFAULT_PAGE_SIZE, lowest=1)
    return _integer(query, "Page", 0, lowest=0), min(page_size, MAX_PAGE_SIZE)


_Item = TypeVar("_Item")


def page_slice(items: Sequence[_Item], page: int, size: int) -> tuple[int, Sequence[_Item]]:
    """Where page `page` of `size` items starts, and its items."""
    start = page * size
    return start, items[start : start + size]


def numbered_page(
    key: str,
    items: Sequence[_Item],
    page: int,
    size: int,
    render: Callable[[_Item], dict[str, Any]],
    uri: Callable[[int], str],
) -> dict[str, Any]:
    """Twilio's list envelope (2010 API) for page `page` of `items`, shown under `key`, for
    lists paged by number alone (no PageToken); `uri(n)` is page n's address."""
    start, shown = page_slice(items, page, size)
    return {
        key: [render(item) for item in shown],
        "end": start + len(shown) - 1 if shown else start,
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + size < len(items) else None,
        "page": page,
        "page_size": size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": uri(page),
    }


def list_messages(
    messages: Sequence[StoredMessage], request: ListRequest, account_sid: str
) -> dict[str, Any]:
    """Twilio's list envelope for one page of `messages` (in any order) under `request`."""
    ordered = sorted((m for m in messages if request.matches(m)), key=sort_key, reverse=True)
    shown, more_after = _select(ordered, request)
    page, size = request.page, request.page_size
    next_uri = None
    if more_after and shown:
        next_uri = request.uri(account_sid, page + 1, PageToken(True, sort_key(shown[-1])))
    previous_uri = None
    if page > 0 and shown:
        previous_uri = request.uri(account_sid, page - 1, PageToken(False, sort_key(shown[0])))
    start = page * size
    return {
        "messages": [message_json(m, account_sid) for m in shown],
        "end": start + len(shown) - 1 if shown else start,
        "first_page_uri": request.uri(account_sid, 0, None),
        "next_page_uri": next_uri,
        "page": page,
        "page_size": size,
        "previous_page_uri": previous_uri,
        "start": start,
        "uri": request.uri(account_sid, page, request.token),
    }


def _select(ordered: list[StoredMessage], request: ListRequest) -> tuple[list[StoredMessage], bool]:
    """The page's messages (newest first) and whether older ones follow them."""
    size, token = request.page_size, request.token
    if token is None:
        begin = request.page * size
        end = begin + size
    elif token.after:
        begin = next((i for i, m in enumerate(ordered) if sort_key(m) < token.key), len(ordered))
        end = begin + size
    else:
        end = sum(1 for m in ordered if sort_key(m) > token.key)
        begin = max(0, end - size)
    return ordered[begin:end], end < len(ordered)


def _day(given: Mapping[str, str], name: str) -> date | None:
    raw = given.get(name)
    if raw is None:
        return None
    text = raw.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        moment: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        moment = _us_moment(text) or parse_rfc2822(text)
    if moment is None:
        raise _invalid(name, raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def _us_moment(text: str) -> datetime | None:
    """ "06/11/2019 22:05:25 MST" as an aware time (UTC when no zone is given)."""
    match = _US_DATE.fullmatch(text)
    if match is None:
        return None
    month, day, year, hour, minute, second, zone = match.groups()
    offset = _offset(zone or "UTC")
    if offset is None:
        return None
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=timezone(offset),
        )
    except ValueError:
        return None  # 13/45/2019


def _offset(zone: str) -> timedelta | None:
    hours = _ZONES.get(zone.upper())
    if hours is not None:
        return timedelta(hours=hours)
    numeric = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", zone)
    if numeric is None:
        return None
    sign = -1 if numeric[1] == "-" else 1
    return sign * timedelta(hours=int(numeric[2]), minutes=int(numeric[3]))


def _integer(query: Mapping[str, str], name: str, default: int, *, lowest: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(name, raw) from None
    if value < lowest:
        raise _invalid(name, raw)
    return value


def _invalid(name: str, raw: str) -> TwilioApiError:
    return TwilioApiError(400, INVALID_PARAMETER, f"Invalid {name} value: {raw!r}")
