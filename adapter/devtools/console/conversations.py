"""What the console shows of messages: the conversation list and one conversation's history.

Both come from Twilio (the emulator, in dev mode) through the adapter's own client and
rate limiter: the list from the newest page of List Messages, grouped by conversation;
a history through the history service, which lists both directions and caches them.

Every message reaches the page in one shape, `page_message`, whether it came from a list,
from the history service or live from the emulator.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from adapter.bot.history import HistoryMessage
from adapter.devtools.emulator.state import INBOUND, StoredMessage
from adapter.history.service import (
    Cursor,
    HistoryService,
    conversation_of,
    message_time,
)
from adapter.twilio.resources import MessageResource

# The conversation list looks at this many of the newest messages (one List request).
CONVERSATION_SCAN = 500
HISTORY_PAGE = 100


def page_message(
    *,
    sid: str,
    inbound: bool,
    from_: str | None,
    to: str,
    body: str,
    status: str | None,
    at: datetime,
    media: Iterable[str] = (),
    num_media: int = 0,
    error_code: int | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    sender = from_ or service or ""
    urls = list(media)
    return {
        "sid": sid,
        "direction": "inbound" if inbound else "outbound",
        # Whose conversation it is: our number and the person's, whichever way it went.
        "ours": to if inbound else sender,
        "person": sender if inbound else to,
        "from": sender,
        "to": to,
        "body": body,
        "status": status,
        "error_code": error_code,
        "media": urls,
        "num_media": max(num_media, len(urls)),
        "at": at.astimezone(UTC).isoformat(),
    }


def from_emulator(message: StoredMessage) -> dict[str, Any]:
    return page_message(
        sid=message.sid,
        inbound=message.direction == INBOUND,
        from_=message.from_,
        to=message.to,
        body=message.body,
        status=message.status,
        at=message.listed_at,
        media=[m.url for m in message.media],
        error_code=message.error_code,
        service=message.messaging_service_sid,
    )


def from_history(message: HistoryMessage) -> dict[str, Any]:
    return page_message(
        sid=message.sid,
        inbound=message.inbound,
        from_=message.from_,
        to=message.to,
        body=message.body,
        status=message.status,
        at=message.at,
        num_media=message.num_media,
        error_code=message.error_code,
    )


def from_resource(message: MessageResource) -> dict[str, Any]:
    return page_message(
        sid=message.sid,
        inbound=message.direction == "inbound",
        from_=message.from_,
        to=message.to,
        body=message.body,
        status=message.status,
        at=message_time(message),
        num_media=message.num_media,
        error_code=message.error_code,
        service=message.messaging_service_sid,
    )


def group_conversations(newest_first: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per conversation, the most recently active first, with its last message."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for message in newest_first:
        key = (message["ours"], message["person"])
        if key not in rows:
            rows[key] = {"ours": key[0], "person": key[1], "last": message}
    return list(rows.values())


async def recent_conversations(
    history: HistoryService, *, scan: int = CONVERSATION_SCAN
) -> list[dict[str, Any]]:
    """The conversations seen among the newest `scan` messages of the account."""
    newest = await history.account_newest(scan)
    return group_conversations(from_resource(m) for m in newest)


async def conversation_page(
    history: HistoryService,
    ours: str,
    person: str,
    *,
    before: str | None = None,
    limit: int = HISTORY_PAGE,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of one conversation, oldest first, and the cursor of the page before it.

    ValueError (saying why) for numbers that are not E.164 or a bad cursor. The first
    page asks Twilio only for what a bot's history would (the newest page each way, or
    what is new since the last sync); an older page first syncs the whole conversation.
    """
    key = conversation_of(ours, person)
    cursor = Cursor.parse(before) if before else None
    if cursor is None:
        await history.recent(key, limit)
    else:
        await history.sync(key)
    page, older = await history.read_page(key, limit=limit, before=cursor)
    return [from_history(m) for m in page], str(older) if older is not None else None
