"""The history service: both directions merged in order, every page, cached, then synced
incrementally; against the emulator in-process and httpx.MockTransport for what the
emulator cannot do (stall, repeat, fail)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter import Context, Router
from adapter.cli.dev import DEV_NUMBER, create_dev_app
from adapter.devtools.emulator import (
    EmulatorConfig,
    EmulatorState,
    StoredMessage,
    create_emulator_app,
    parse_faults,
)
from adapter.devtools.emulator.state import INBOUND, OUTBOUND_API
from adapter.history.service import (
    MAX_ATTEMPTS,
    Cursor,
    HistoryService,
    conversation_of,
    default_our_number,
)
from adapter.runtime.settings import Settings
from adapter.store.base import ReplyDraft
from adapter.store.sqlite import SQLiteStore
from adapter.testing import inbound_message
from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.errors import TwilioRateLimited
from adapter.twilio.messages import ConversationKey, OutboundMessage
from adapter.twilio.resources import format_rfc2822
from adapter.twilio.send_options import SendOptions
from tests.servers import bound_socket, serve, wait_for

ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "history-test-token"
OURS = "+15005550006"
PERSON = "+15551234567"
SOMEONE_ELSE = "+15557654321"
KEY = ConversationKey(ours=OURS, person=PERSON)
NOW = datetime.now(UTC)


# --- the pieces ------------------------------------------------------------------------


@dataclass
class RecordingLimiter:
    """A Limiter that admits everything and remembers how it was used."""

    held: int = 0
    slots: int = 0
    # What left a slot as an error: a real limiter slows down on Twilio's 429s there.
    errors: list[BaseException] = field(default_factory=list)
    pauses: list[float | None] = field(default_factory=list)  # what slow_down() was told

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        self.held += 1
        self.slots += 1
        try:
            yield
        except BaseException as error:
            self.errors.append(error)
            raise
        finally:
            self.held -= 1

    def slot(self, sender: str | None = None) -> contextlib.AbstractAsyncContextManager[None]:
        return self._slot()

    def slow_down(self, retry_after: float | None) -> None:
        self.pauses.append(retry_after)


@dataclass
class History:
    service: HistoryService
    store: SQLiteStore
    limiter: RecordingLimiter
    requests: list[httpx.Request]
    outside_a_slot: list[httpx.Request]

    def lists(self) -> list[dict[str, str]]:
        """The query of each List Messages request, in order."""
        return [dict(r.url.params) for r in self.requests if r.url.path.endswith("Messages.json")]

    def gets(self) -> list[str]:
        return [r.url.path for r in self.requests if not r.url.path.endswith("Messages.json")]


@contextlib.asynccontextmanager
async def history_over(
    transport: httpx.AsyncBaseTransport, tmp_path: Path, *, page_size: int = 1000
) -> AsyncIterator[History]:
    limiter = RecordingLimiter()
    requests: list[httpx.Request] = []
    outside: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request)
        if limiter.held == 0:
            outside.append(request)

    store = SQLiteStore(tmp_path / "history.sqlite3")
    await store.open()
    async with httpx.AsyncClient(transport=transport, event_hooks={"request": [record]}) as http:
        client = TwilioClient(
            Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), "http://twilio.test", http=http
        )
        service = HistoryService(store, client, limiter, page_size=page_size)
        try:
            yield History(service, store, limiter, requests, outside)
        finally:
            await store.close()


@pytest.fixture
def emulator() -> EmulatorState:
    return EmulatorState()


@contextlib.asynccontextmanager
async def history_at(
    emulator: EmulatorState, tmp_path: Path, *, page_size: int = 1000, faults: str = ""
) -> AsyncIterator[History]:
    config = EmulatorConfig(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        numbers=[OURS],
        faults=parse_faults(faults),
    )
    app = create_emulator_app(config, emulator)
    try:
        async with history_over(
            httpx.ASGITransport(app=app), tmp_path, page_size=page_size
        ) as history:
            yield history
    finally:
        await emulator.aclose()


def text(
    emulator: EmulatorState,
    body: str,
    at: datetime,
    *,
    inbound: bool,
    person: str = PERSON,
    ours: str = OURS,
    status: str | None = None,
    sent: bool = True,
) -> StoredMessage:
    """A message Twilio holds, however it got there (the adapter, a console, a script)."""
    return emulator.add_message(
        direction=INBOUND if inbound else OUTBOUND_API,
        from_=person if inbound else ours,
        to=ours if inbound else person,
        body=body,
        status=status or ("received" if inbound else "delivered"),
        date_created=at,
        date_sent=at if sent else None,
    )


async def bodies(history: History, limit: int = 1000) -> list[str]:
    return [m.body for m in await history.service.read(KEY, limit=limit)]


# --- a full rebuild ----------------------------------------------------------------------


async def test_a_full_sync_merges_both_directions_in_order_across_pages(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    # 7 texts from the person and 6 from us, interleaved unevenly in time and added to
    # Twilio out of order; page size 3, so each direction takes several pages.
    order = ["in", "in", "out", "in", "out", "out", "in", "in", "out", "in", "out", "in", "out"]
    start = NOW - timedelta(days=20)
    for index in reversed(range(len(order))):
        at = start + timedelta(minutes=7 * index)
        text(emulator, f"{order[index]}-{index}", at, inbound=order[index] == "in")
    text(emulator, "to someone else", start, inbound=False, person=SOMEONE_ELSE)
    text(emulator, "to another of our numbers", start, inbound=True, ours="+15005550007")

    async with history_at(emulator, tmp_path, page_size=3) as history:
        report = await history.service.sync(KEY)
        messages = await history.service.read(KEY, limit=100)

    assert [m.body for m in messages] == [f"{kind}-{i}" for i, kind in enumerate(order)]
    assert [m.direction for m in messages] == [
        "inbound" if kind == "in" else "outbound" for kind in order
    ]
    assert all((m.from_, m.to) == (PERSON, OURS) for m in messages if m.inbound)
    # 7 inbound in pages of 3,3,1; 6 outbound in 3,3 (the second says there is no next).
    assert (report.kind, report.pages, report.requests, report.messages) == ("full", 5, 5, 13)
    assert {(q["From"], q["To"], q["PageSize"]) for q in history.lists()} == {
        (PERSON, OURS, "3"),
        (OURS, PERSON, "3"),
    }
    assert all("DateSent>" not in q for q in history.lists())


async def test_both_directions_are_listed_at_the_same_time(tmp_path: Path) -> None:
    # Each direction's first request is held until the other's has arrived: fetched one
    # after the other, the first would wait for ever (here, until the timeout).
    arrived: set[str] = set()
    both_in_flight = asyncio.Event()

    async def twilio(request: httpx.Request) -> httpx.Response:
        arrived.add(request.url.params["From"])
        if len(arrived) == 2:
            both_in_flight.set()
        await both_in_flight.wait()
        return httpx.Response(200, json={"messages": [], "next_page_uri": None})

    async with history_over(httpx.MockTransport(twilio), tmp_path) as history:
        async with asyncio.timeout(5):
            await history.service.sync(KEY)
    assert arrived == {PERSON, OURS}


async def test_a_message_listed_twice_is_kept_once(tmp_path: Path) -> None:
    # Twilio pages by position; a list that shifts between two pages repeats a message.
    first, repeated, last = (message_json(f"SM{n:032d}", minutes=n) for n in (3, 2, 1))
    pages: dict[str, list[dict[str, Any]]] = {
        f"{PERSON}:0": [first, repeated],
        f"{PERSON}:1": [repeated, last],
        f"{OURS}:0": [],
    }

    def twilio(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("Page", "0")
        messages = pages[f"{request.url.params['From']}:{page}"]
        more = request.url.params["From"] == PERSON and page == "0"
        next_uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json?From=%2B15551234567&To=%2B15005550006&PageSize=2&Page=1"
        return httpx.Response(
            200, json={"messages": messages, "next_page_uri": next_uri if more else None}
        )

    async with history_over(httpx.MockTransport(twilio), tmp_path, page_size=2) as history:
        report = await history.service.sync(KEY)
        assert [m.sid for m in await history.service.read(KEY, limit=10)] == [
            last["sid"],
            repeated["sid"],
            first["sid"],
        ]
    assert report.messages == 3


async def test_every_request_waits_for_the_rate_limiter(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    for index in range(10):
        text(emulator, f"t{index}", NOW - timedelta(days=9, minutes=index), inbound=index % 3 == 0)
    async with history_at(emulator, tmp_path, page_size=2) as history:
        await history.service.sync(KEY)
        text(emulator, "new", NOW, inbound=True)
        await history.service.sync(KEY)
    assert len(history.requests) > 6
    assert history.outside_a_slot == []


async def test_429s_that_never_end_give_up_after_a_bounded_number_of_tries(
    tmp_path: Path,
) -> None:
    def twilio(request: httpx.Request) -> httpx.Response:
        body = {"code": 20429, "message": "Too Many Requests", "status": 429}
        return httpx.Response(429, json=body, headers={"Retry-After": "7"})

    async with history_over(httpx.MockTransport(twilio), tmp_path) as history:
        with pytest.raises(TwilioRateLimited, match="Twilio list failed: HTTP 429, error 20429"):
            await history.service.sync(KEY)
        assert await history.store.history_synced_through(str(KEY)) is None
    # Each direction's first page, tried MAX_ATTEMPTS times, each try inside a slot; the
    # limiter was told to pause for Twilio's Retry-After before every try again.
    assert len(history.lists()) == 2 * MAX_ATTEMPTS
    assert history.limiter.pauses == [7.0] * (2 * (MAX_ATTEMPTS - 1))
    assert history.outside_a_slot == []


async def test_a_sync_through_429s_and_5xx_gets_every_message(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    # The emulator answers 429 (Retry-After: 1) or 500 to about half of the List requests.
    start = NOW - timedelta(days=3)
    for index in range(30):
        text(emulator, f"t{index:02d}", start + timedelta(minutes=index), inbound=index % 2 == 0)
    faults = "429=0.25,500=0.25,lists=1,seed=11"
    async with history_at(emulator, tmp_path, page_size=4, faults=faults) as history:
        report = await history.service.sync(KEY)
        assert await bodies(history) == [f"t{index:02d}" for index in range(30)]

    # 15 each way in pages of 4: 4 pages each; every failed try was made again.
    assert (report.kind, report.pages, report.messages) == ("full", 8, 30)
    assert report.requests == len(history.lists()) > report.pages
    assert history.limiter.pauses and set(history.limiter.pauses) == {1.0}


async def test_a_5xx_is_tried_again_after_a_backoff_and_the_page_is_not_fetched_twice(
    tmp_path: Path,
) -> None:
    answers = iter([503, 502, 200])
    first_pages: list[str] = []

    def twilio(request: httpx.Request) -> httpx.Response:
        if request.url.params["From"] == OURS:
            return httpx.Response(200, json={"messages": [], "next_page_uri": None})
        first_pages.append(str(request.url))
        status = next(answers)
        if status != 200:
            return httpx.Response(status, text="Bad Gateway")
        page = [message_json(f"SM{n:032d}", minutes=n) for n in (2, 1)]
        return httpx.Response(200, json={"messages": page, "next_page_uri": None})

    async with history_over(httpx.MockTransport(twilio), tmp_path) as history:
        loop = asyncio.get_running_loop()
        began = loop.time()
        report = await history.service.sync(KEY)
        waited = loop.time() - began
        assert len(await bodies(history)) == 2

    assert len(first_pages) == 3 and len(set(first_pages)) == 1  # the same page, again
    assert waited >= 0.5 + 1.0  # the backoff: 0.5 s, then 1 s
    assert history.limiter.pauses == []  # a 5xx does not pause everyone's sends
    assert (report.pages, report.messages, report.requests) == (2, 2, 4)


async def test_the_accounts_newest_messages_take_one_request_inside_the_limiter(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    text(emulator, "older, to us", NOW - timedelta(hours=2), inbound=True)
    text(
        emulator, "newest, elsewhere", NOW - timedelta(hours=1), inbound=False, person=SOMEONE_ELSE
    )
    text(emulator, "oldest", NOW - timedelta(hours=3), inbound=False)
    async with history_at(emulator, tmp_path) as history:
        newest = await history.service.account_newest(2)
    assert [m.body for m in newest] == ["newest, elsewhere", "older, to us"]
    assert (len(history.requests), history.limiter.slots, history.outside_a_slot) == (1, 1, [])


# --- incremental sync --------------------------------------------------------------------


async def test_a_later_sync_asks_only_for_what_is_new(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    # 40 texts in the hours before the first sync: inside the DateSent window of the next
    # sync, which nevertheless stops at the first page reaching back before the last sync.
    for index in range(40):
        text(
            emulator,
            f"old {index}",
            NOW - timedelta(hours=3, minutes=index),
            inbound=index % 2 == 0,
        )
    async with history_at(emulator, tmp_path, page_size=5) as history:
        await history.service.sync(KEY)
        synced = await history.store.history_synced_through(str(KEY))
        assert synced is not None
        first_sync = len(history.requests)
        text(emulator, "new from them", datetime.now(UTC), inbound=True)
        text(emulator, "new from us", datetime.now(UTC), inbound=False)

        report = await history.service.sync(KEY)
        later = history.lists()[first_sync:]
        latest = await bodies(history, limit=2)

    assert first_sync == 4 + 4  # 20 per direction, in pages of 5
    assert (report.kind, report.requests) == ("incremental", 3)
    day = (synced - timedelta(days=1)).date().isoformat()
    dated = sorted((q["From"], q["DateSent>"]) for q in later if "DateSent>" in q)
    assert dated == sorted([(PERSON, day), (OURS, day)])
    # Our newest messages with no date filter, for the ones not sent yet (see below).
    assert [q["From"] for q in later if "DateSent>" not in q] == [OURS]
    assert sorted(latest) == ["new from them", "new from us"]


async def test_a_message_not_yet_sent_shows_up_in_a_later_sync(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    text(emulator, "hello", NOW - timedelta(days=3), inbound=True)
    async with history_at(emulator, tmp_path) as history:
        await history.service.sync(KEY)
        # Queued by another system a moment ago: no date_sent, so no DateSent filter sees it.
        queued = text(
            emulator, "on its way", datetime.now(UTC), inbound=False, status="queued", sent=False
        )
        await history.service.sync(KEY)
        [latest] = await history.service.read(KEY, limit=1)
    assert (latest.sid, latest.status, latest.at) == (
        queued.sid,
        "queued",
        queued.date_created.replace(microsecond=0),
    )


async def test_statuses_that_were_not_final_are_refreshed(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    # One message stuck at "sent" two and a half days ago: older than the DateSent window
    # and, with 60 newer outbound texts after it, below our newest page too.
    stuck = text(emulator, "stuck", NOW - timedelta(days=2, hours=12), inbound=False, status="sent")
    for index in range(60):
        text(
            emulator,
            f"reply {index}",
            NOW - timedelta(days=2, hours=11, minutes=-index),
            inbound=False,
        )
    ancient = text(emulator, "ancient", NOW - timedelta(days=6), inbound=False, status="sent")
    recent = text(emulator, "recent", NOW - timedelta(hours=1), inbound=False, status="sent")

    async with history_at(emulator, tmp_path) as history:
        await history.service.sync(KEY)
        for message in (stuck, ancient, recent):
            emulator.set_status(message.sid, "delivered")
        report = await history.service.sync(KEY)
        statuses = {m.sid: m.status for m in await history.service.read(KEY, limit=100)}

    assert statuses[stuck.sid] == "delivered"  # asked with Get Message
    assert statuses[recent.sid] == "delivered"  # seen again in the dated list
    # Twilio stops updating a status after a few days: not worth a request.
    assert statuses[ancient.sid] == "sent"
    assert history.gets() == [f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{stuck.sid}.json"]
    assert report.refreshed == 1


# --- for bots ----------------------------------------------------------------------------


async def test_a_bot_on_a_long_conversation_gets_the_latest_without_a_full_sync(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    emulator.seed_conversation(OURS, PERSON, 400, start=NOW - timedelta(days=30))
    handling = inbound_message("what did I say?", person=PERSON, ours=OURS)
    async with history_at(emulator, tmp_path) as history:
        latest = await history.service.provider_for(handling)(3)
        synced = await history.store.history_synced_through(str(KEY))
    assert [m.body for m in latest] == [
        "Seeded message 399 of 400",
        "Seeded message 400 of 400",
        "what did I say?",
    ]
    assert len(history.requests) == 2  # the newest page of each direction
    assert synced is None  # 400 texts were not all fetched, so a full sync is still owed


async def test_a_short_conversation_fetched_for_a_bot_counts_as_synced(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    emulator.seed_conversation(OURS, PERSON, 4, start=NOW - timedelta(days=30))
    async with history_at(emulator, tmp_path) as history:
        await history.service.recent(KEY, 10)
        assert await history.store.history_synced_through(str(KEY)) is not None
        await history.service.recent(KEY, 10)
    later = history.lists()[2:]
    assert (len(later), sum("DateSent>" in q for q in later)) == (3, 2)  # an incremental sync


async def test_a_bot_still_gets_the_cached_history_when_twilio_is_unreachable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def twilio(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    handling = inbound_message("are you there?", person=PERSON, ours=OURS)
    async with history_over(httpx.MockTransport(twilio), tmp_path) as history:
        with caplog.at_level(logging.WARNING, logger="adapter.history.service"):
            latest = await history.service.provider_for(handling)(5)
    assert [m.body for m in latest] == ["are you there?"]
    assert "Twilio list failed" in caplog.text


history_bot = Router()


@history_bot.message()
async def recall(ctx: Context) -> None:
    earlier = await ctx.history(limit=3)
    await ctx.reply(" | ".join(f"{m.direction}:{m.body}" for m in earlier))


async def test_ctx_history_includes_texts_sent_elsewhere_and_the_one_being_handled(
    tmp_path: Path,
) -> None:
    sock, base = bound_socket()
    settings = Settings(
        database=str(tmp_path / "adapter.sqlite3"), bots="tests.history.test_service:history_bot"
    )
    dev = create_dev_app(settings, base)
    text(dev.emulator, "from the website", NOW - timedelta(days=2), inbound=False, ours=DEV_NUMBER)
    text(
        dev.emulator,
        "thanks!",
        NOW - timedelta(days=2) + timedelta(minutes=1),
        inbound=True,
        ours=DEV_NUMBER,
    )
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "hi"})
        assert answer.json()["webhook_status"] == 200

        def reply() -> str | None:
            ours = [m for m in dev.emulator.messages() if m.from_ == DEV_NUMBER and m.to == PERSON]
            return ours[-1].body if len(ours) == 2 else None

        assert await wait_for(reply) == "outbound:from the website | inbound:thanks! | inbound:hi"


# --- small pieces ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "person", "problem"),
    [
        (OURS, "5551234567", "the person's number '5551234567' is not an E.164 number"),
        (OURS, "+1 555 123 4567", "is not an E.164 number"),
        ("15005550006", PERSON, "our number '15005550006' is not"),
        (OURS, "whatsapp:" + PERSON, "both be whatsapp: or both not"),
    ],
)
def test_a_conversation_needs_two_addresses_on_one_channel(
    ours: str, person: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        conversation_of(ours, person)


@pytest.mark.parametrize(
    ("keys", "person", "expected"),
    [
        (["*", OURS], PERSON, OURS),
        (["whatsapp:" + OURS, "MG" + "0" * 32], PERSON, OURS),
        ([OURS], "whatsapp:" + PERSON, "whatsapp:" + OURS),
        (["*"], PERSON, "no route names a number"),
        ([OURS, "+15005550007"], PERSON, "the routes name +15005550006, +15005550007"),
    ],
)
def test_our_number_defaults_to_the_only_one_routed(
    keys: list[str], person: str, expected: str
) -> None:
    if expected.startswith(("+", "whatsapp:")):
        assert default_our_number(keys, person) == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)):
            default_our_number(keys, person)


def test_a_cursor_reads_back_what_it_wrote() -> None:
    cursor = Cursor(datetime(2026, 1, 5, 12, 0, 0, 5, tzinfo=UTC), "SM" + "1" * 32)
    assert Cursor.parse(str(cursor)) == cursor
    assert Cursor.parse("2026-01-05T12:00:00Z") == Cursor(datetime(2026, 1, 5, 12, tzinfo=UTC), "")
    with pytest.raises(ValueError, match="neither an ISO 8601 time nor a cursor"):
        Cursor.parse("yesterday")


def message_json(sid: str, *, minutes: int, direction: str = "inbound") -> dict[str, Any]:
    at = format_rfc2822(NOW - timedelta(days=5) + timedelta(minutes=minutes))
    inbound = direction == "inbound"
    return {
        "sid": sid,
        "account_sid": ACCOUNT_SID,
        "from": PERSON if inbound else OURS,
        "to": OURS if inbound else PERSON,
        "body": f"body of {sid}",
        "status": "received" if inbound else "delivered",
        "direction": direction,
        "num_segments": "1",
        "num_media": "0",
        "date_created": at,
        "date_sent": at,
        "date_updated": at,
    }


# --- scheduled messages ------------------------------------------------------------------


def scheduled(
    emulator: EmulatorState, body: str, created: datetime, send_at: datetime | None
) -> StoredMessage:
    """A scheduled message; `send_at` None: the resource does not say when (as Twilio's)."""
    options = (
        {"schedule_type": "fixed", "send_at": send_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if send_at is not None
        else None
    )
    return emulator.add_message(
        direction=OUTBOUND_API,
        from_=OURS,
        to=PERSON,
        body=body,
        status="scheduled",
        date_created=created,
        options=options,
    )


async def test_a_scheduled_message_takes_its_place_at_its_send_time(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    send_at = (NOW + timedelta(hours=2)).replace(microsecond=0)
    text(emulator, "book me in", NOW - timedelta(hours=1), inbound=True)
    scheduled(emulator, "Reminder: 10 am", NOW - timedelta(minutes=30), send_at)
    text(emulator, "thanks", NOW - timedelta(minutes=10), inbound=True)

    async with history_at(emulator, tmp_path) as history:
        await history.service.sync(KEY)
        messages = await history.service.read(KEY, limit=10)

    assert [(m.body, m.status) for m in messages] == [
        ("book me in", "received"),
        ("thanks", "received"),
        ("Reminder: 10 am", "scheduled"),
    ]
    assert messages[-1].at == send_at


async def test_when_twilio_does_not_say_the_send_time_the_outbox_does(
    emulator: EmulatorState, tmp_path: Path
) -> None:
    send_at = (NOW + timedelta(hours=5)).replace(microsecond=0)
    text(emulator, "remind me", NOW - timedelta(hours=1), inbound=True)
    at_twilio = scheduled(emulator, "Reminder", NOW - timedelta(minutes=30), None)
    text(emulator, "ok", NOW - timedelta(minutes=10), inbound=True)

    async with history_at(emulator, tmp_path) as history:
        reply = OutboundMessage(
            to=PERSON,
            body="Reminder",
            messaging_service_sid="MG" + "1" * 32,
            options=SendOptions(send_at=send_at),
        )
        [row] = await history.store.enqueue_outbound([ReplyDraft(str(KEY), reply.to_json())])
        await history.store.claim_outbound(1, 60, datetime.now(UTC))
        await history.store.mark_sent(row, at_twilio.sid, "scheduled")
        await history.service.sync(KEY)
        messages = await history.service.read(KEY, limit=10)

    assert [m.body for m in messages] == ["remind me", "ok", "Reminder"]
    assert messages[-1].at == send_at
