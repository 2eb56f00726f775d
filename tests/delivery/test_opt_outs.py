"""Opt-out: STOP and START keep per-(sender, person) state; replies, proactive sends and
queued sends to a person who opted out are refused locally; a 21610 from Twilio (on a
send or in a status) marks the person opted out; HELP always reaches bots.

The store is a real SQLite file; Twilio is an httpx.MockTransport that records requests.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from adapter.bot.context import (
    Context,
    InvalidMediaUrl,
    RecipientOptedOut,
    ReplyError,
    ReplyTooLong,
    TooManyMedia,
)
from adapter.bot.router import Router
from adapter.delivery.dispatcher import Dispatcher
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.retry import RetryPolicy
from adapter.delivery.sender import Sender
from adapter.long_messages import LongMessages
from adapter.ratelimit import AccountLimiter, parse_rate
from adapter.runtime.bot_routes import RouteSpec, load_route_table
from adapter.runtime.channel import Channel, build_channel
from adapter.runtime.settings import Settings
from adapter.store.base import ReplyDraft, Store
from adapter.store.sqlite import SQLiteStore
from adapter.testing import inbound_message
from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.messages import OutboundMessage
from adapter.twilio.opt_out import KEYWORDS, OptOutType, opt_out_type
from adapter.web.app import create_app

ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "opt-out-test-token"
OURS = "+15005550006"
PERSON = "+15551230000"
SERVICE = "MG" + "8" * 32

# --- the bot -------------------------------------------------------------------------

router = Router("opt-out-test")
# What the bot saw: (text, ctx.opted_out, how its reply went).
turns: list[tuple[str, bool, str]] = []


@router.message()
async def answer(ctx: Context) -> None:
    try:
        await ctx.reply(f"re: {ctx.text}")
        outcome = "queued"
    except RecipientOptedOut as refused:
        outcome = f"refused: {refused}"
    turns.append((ctx.text, ctx.opted_out, outcome))


# Replies once, then makes the bad reply its text names, and lets the error escape.
careless_router = Router("careless")
BAD_REPLIES: dict[str, Callable[[Context], Awaitable[None]]] = {
    "too many media": lambda ctx: ctx.reply(
        "look", media=[f"https://e.com/{i}.jpg" for i in range(11)]
    ),
    "bad media url": lambda ctx: ctx.reply("look", media=["file:///etc/passwd"]),
    "too long": lambda ctx: ctx.reply("x" * 1601),
    "opted out": lambda ctx: ctx.reply("hello"),
}


@careless_router.message()
async def careless(ctx: Context) -> None:
    await ctx.reply("first reply")
    await BAD_REPLIES[ctx.text](ctx)


@pytest.fixture(autouse=True)
def _forget_turns() -> None:
    turns.clear()


# --- keywords ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reported", "expected"),
    [
        *[pytest.param(word, None, kind, id=word) for word, kind in KEYWORDS.items()],
        pytest.param("  stop\n", None, OptOutType.STOP, id="trimmed-any-case"),
        pytest.param("Unsubscribe", None, OptOutType.STOP, id="mixed-case"),
        pytest.param("please stop", None, None, id="not-the-whole-body"),
        pytest.param("STOP!", None, None, id="punctuation"),
        pytest.param("", None, None, id="empty"),
        pytest.param("arrêt", "STOP", OptOutType.STOP, id="custom-keyword-reported"),
        pytest.param("stop", "START", OptOutType.START, id="the-report-wins"),
        pytest.param("help", "FUTURE", OptOutType.HELP, id="unknown-report-falls-back"),
    ],
)
def test_opt_out_type(body: str, reported: str | None, expected: OptOutType | None) -> None:
    assert opt_out_type(body, reported) == expected


def test_every_keyword_twilio_documents_is_known() -> None:
    stops = {word for word, kind in KEYWORDS.items() if kind is OptOutType.STOP}
    assert stops == {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    assert {word for word, kind in KEYWORDS.items() if kind is OptOutType.START} == {
        "START",
        "YES",
        "UNSTOP",
    }
    assert {word for word, kind in KEYWORDS.items() if kind is OptOutType.HELP} == {"HELP", "INFO"}


# --- the Context -----------------------------------------------------------------------


async def test_a_reply_to_a_person_who_opted_out_is_refused_and_not_queued() -> None:
    ctx = Context(message=inbound_message("hi"), bot_name="test", opted_out=True)

    with pytest.raises(RecipientOptedOut) as refused:
        await ctx.reply("hello")

    assert isinstance(refused.value, ReplyError)
    assert (refused.value.person, refused.value.sender) == ("+15551230000", OURS)
    assert "until they text START" in str(refused.value)
    assert ctx.replies == []


# --- the dispatcher --------------------------------------------------------------------


@dataclass
class Rig:
    store: SQLiteStore
    dispatcher: Dispatcher

    async def text(self, body: str, *, to: str = OURS, service: str | None = None) -> None:
        """A text from PERSON, committed and handled as the webhook and dispatcher would."""
        message = inbound_message(body, person=PERSON, ours=to)
        payload = message.to_json()
        if service is not None:
            payload["messaging_service_sid"] = service
        assert await self.store.add_inbound(
            message.message_sid, str(message.conversation), payload, message.received_at
        )
        [job] = await self.store.claim_inbound(1, 60)
        await self.dispatcher.handle(job)

    async def replies(self) -> list[str]:
        return [r.payload["body"] for r in await self.store.list_outbound()]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "opt-out.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def dispatcher_for(
    store: SQLiteStore,
    *,
    opt_out_to_bots: bool = False,
    route: str = "*",
    bot: str = "router",
    long_messages: LongMessages = LongMessages.SPLIT,
) -> Rig:
    routes = load_route_table([RouteSpec(route, f"{__name__}:{bot}")])
    dispatcher = Dispatcher(
        store,
        routes,
        concurrency=1,
        opt_outs=OptOuts(store),
        on_replies_committed=lambda: None,
        opt_out_to_bots=opt_out_to_bots,
        long_messages=long_messages,
    )
    return Rig(store, dispatcher)


async def test_stop_is_recorded_and_does_not_reach_bots_by_default(store: SQLiteStore) -> None:
    rig = dispatcher_for(store)

    await rig.text("STOP")

    assert await store.is_opted_out(OURS, PERSON)
    assert turns == [] and await rig.replies() == []


async def test_after_stop_a_reply_is_refused_and_after_start_it_goes_again(
    store: SQLiteStore,
) -> None:
    rig = dispatcher_for(store)

    await rig.text("stop")
    await rig.text("are you there?")
    await rig.text("START")
    await rig.text("back")

    assert [(text, opted_out) for text, opted_out, _ in turns] == [
        ("are you there?", True),
        ("back", False),
    ]
    assert turns[0][2].startswith(f"refused: {PERSON} opted out of texts from {OURS}")
    assert await rig.replies() == ["re: back"]
    assert not await store.is_opted_out(OURS, PERSON)


@pytest.mark.parametrize(
    ("body", "reaches_bots"),
    [
        pytest.param("HELP", True, id="help-always"),
        pytest.param("info", True, id="info-always"),
        pytest.param("STOP", False, id="stop-not-by-default"),
        pytest.param("START", False, id="start-not-by-default"),
        pytest.param("hello", True, id="plain-text"),
    ],
)
async def test_which_texts_reach_bots_by_default(
    store: SQLiteStore, body: str, reaches_bots: bool
) -> None:
    await dispatcher_for(store).text(body)

    assert [text for text, _, _ in turns] == ([body] if reaches_bots else [])


async def test_stop_and_start_can_be_passed_on_to_bots(store: SQLiteStore) -> None:
    rig = dispatcher_for(store, opt_out_to_bots=True)

    await rig.text("STOP")
    await rig.text("START")

    # The bot hears both; it may not answer the STOP (Twilio confirms it), and may the START.
    assert [(text, opted_out) for text, opted_out, _ in turns] == [("STOP", True), ("START", False)]
    assert await rig.replies() == ["re: START"]


async def test_a_stop_through_a_messaging_service_covers_number_and_service(
    store: SQLiteStore,
) -> None:
    rig = dispatcher_for(store, route=SERVICE)

    await rig.text("STOP", service=SERVICE)

    assert await store.is_opted_out(OURS, PERSON)
    assert await store.is_opted_out(SERVICE, PERSON)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param("too many media", TooManyMedia, id="too-many-media"),
        pytest.param("bad media url", InvalidMediaUrl, id="invalid-media-url"),
        pytest.param("too long", ReplyTooLong, id="too-long-refused"),
    ],
)
async def test_a_turn_that_hits_a_reply_error_sends_nothing_and_logs_it_once(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture, text: str, error: type[ReplyError]
) -> None:
    await store.set_opted_out(OURS, PERSON, text == "opted out", "STOP")
    rig = dispatcher_for(store, bot="careless_router", long_messages=LongMessages.REFUSE)

    with caplog.at_level(logging.INFO, logger="adapter"):
        await rig.text(text)

    assert await rig.replies() == []  # not even the reply made before the error
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], error)]
    assert len(logged) == 1


async def test_a_reply_to_a_person_who_opted_out_is_an_info_line_not_a_traceback(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    await store.set_opted_out(OURS, PERSON, True, "STOP")
    rig = dispatcher_for(store, bot="careless_router")

    with caplog.at_level(logging.INFO, logger="adapter"):
        await rig.text("opted out")

    assert await rig.replies() == []
    [line] = [r for r in caplog.records if "refused" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert line.exc_info is None
    assert "opted out of texts from +15005550006" in line.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# --- the sender ------------------------------------------------------------------------


@dataclass
class FakeTwilio:
    """Answers every create with `status` (and Twilio's error `code` when not 201)."""

    status: int = 201
    code: int | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 201:
            body = {"code": self.code, "message": "refused", "status": self.status}
            return httpx.Response(self.status, json=body)
        sid = "SM" + uuid.uuid4().hex
        return httpx.Response(
            201,
            json={"sid": sid, "status": "queued", "to": PERSON, "from": OURS, "body": "x"},
        )


@pytest.fixture
async def http() -> AsyncIterator[tuple[httpx.AsyncClient, FakeTwilio]]:
    twilio = FakeTwilio()
    async with httpx.AsyncClient(transport=httpx.MockTransport(twilio)) as client:
        yield client, twilio


def sender_for(store: SQLiteStore, client: httpx.AsyncClient) -> Sender:
    credentials = Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)
    return Sender(
        store,
        TwilioClient(credentials, http=client),
        AccountLimiter(max_concurrency=1, rate=parse_rate("100/1s")),
        RetryPolicy(max_attempts=3),
        status_callback_url=None,
        concurrency=1,
        opt_outs=OptOuts(store),
    )


async def queue(store: Store, message: OutboundMessage) -> int:
    draft = ReplyDraft(conversation=str(message.conversation), payload=message.to_json())
    [outbox_id] = await store.enqueue_outbound([draft])
    return outbox_id


async def send_one(store: SQLiteStore, sender: Sender) -> None:
    [job] = await store.claim_outbound(1, 60, sender_now())
    await sender.deliver(job)


def sender_now() -> datetime:
    return datetime.now(UTC)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(OutboundMessage(to=PERSON, body="sale!", from_=OURS), id="from-a-number"),
        pytest.param(
            OutboundMessage(to=PERSON, body="sale!", messaging_service_sid=SERVICE),
            id="through-a-service",
        ),
    ],
)
async def test_a_send_queued_before_the_stop_fails_with_21610_without_calling_twilio(
    store: SQLiteStore,
    http: tuple[httpx.AsyncClient, FakeTwilio],
    message: OutboundMessage,
) -> None:
    client, twilio = http
    outbox_id = await queue(store, message)
    await store.set_opted_out(message.from_ or SERVICE, PERSON, True, "STOP")

    await send_one(store, sender_for(store, client))

    record = await store.get_outbound(outbox_id)
    assert record is not None
    assert (record.state, record.error_code, record.message_sid) == ("failed", 21610, None)
    assert twilio.requests == []


async def test_another_persons_send_still_goes(
    store: SQLiteStore, http: tuple[httpx.AsyncClient, FakeTwilio]
) -> None:
    client, twilio = http
    await store.set_opted_out(OURS, "+15559999999", True, "STOP")
    outbox_id = await queue(store, OutboundMessage(to=PERSON, body="hi", from_=OURS))

    await send_one(store, sender_for(store, client))

    record = await store.get_outbound(outbox_id)
    assert record is not None and record.state == "sent"
    assert len(twilio.requests) == 1


async def test_a_21610_from_twilio_on_a_send_marks_the_person_opted_out(
    store: SQLiteStore, http: tuple[httpx.AsyncClient, FakeTwilio]
) -> None:
    client, twilio = http
    twilio.status, twilio.code = 400, 21610
    outbox_id = await queue(store, OutboundMessage(to=PERSON, body="hi", from_=OURS))

    await send_one(store, sender_for(store, client))

    record = await store.get_outbound(outbox_id)
    assert record is not None and (record.state, record.error_code) == ("failed", 21610)
    assert await store.is_opted_out(OURS, PERSON)


async def test_another_permanent_error_does_not(
    store: SQLiteStore, http: tuple[httpx.AsyncClient, FakeTwilio]
) -> None:
    client, twilio = http
    twilio.status, twilio.code = 400, 21211
    await queue(store, OutboundMessage(to=PERSON, body="hi", from_=OURS))

    await send_one(store, sender_for(store, client))

    assert not await store.is_opted_out(OURS, PERSON)


# --- the channel: proactive sends, status callbacks, the operator API -----------------


@pytest.fixture
async def channel(
    tmp_path: Path, http: tuple[httpx.AsyncClient, FakeTwilio]
) -> AsyncIterator[Channel]:
    settings = Settings(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        database=str(tmp_path / "channel.sqlite3"),
        bots=f"{__name__}:router",
        admin_token="opt-out-admin-token",
    )
    built = build_channel(settings, http=http[0])
    await built.store.open()
    yield built
    await built.store.close()


async def test_a_proactive_send_to_a_person_who_opted_out_raises(channel: Channel) -> None:
    await channel.store.set_opted_out(OURS, PERSON, True, "STOP")

    with pytest.raises(RecipientOptedOut, match=re.escape(f"{PERSON} opted out of texts from")):
        await channel.send_text(PERSON, "sale!", from_=OURS)

    assert await channel.store.list_outbound() == []
    assert await channel.send_text("+15559999999", "sale!", from_=OURS) > 0


async def test_the_operator_api_answers_409_for_a_person_who_opted_out(channel: Channel) -> None:
    await channel.store.set_opted_out(OURS, PERSON, True, "STOP")
    app = create_app(channel.settings, channel=channel)

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://adapter"
    ) as client:
        answer = await client.post(
            "/api/messages",
            json={"to": PERSON, "from": OURS, "body": "sale!"},
            headers={"Authorization": "Bearer opt-out-admin-token"},
        )

    assert answer.status_code == 409
    assert "opted out" in answer.json()["error"]


@pytest.mark.parametrize(
    ("error_code", "opted_out"),
    [pytest.param(21610, True, id="21610"), pytest.param(30003, False, id="other-code")],
)
async def test_a_21610_in_a_status_marks_the_person_opted_out(
    channel: Channel, error_code: int, opted_out: bool
) -> None:
    outbox_id = await queue(channel.store, OutboundMessage(to=PERSON, body="hi", from_=OURS))
    [job] = await channel.store.claim_outbound(1, 60, sender_now())
    await channel.store.mark_sent(job.id, "SM" + "1" * 32, "queued")

    await channel.statuses.record("SM" + "1" * 32, "failed", error_code)

    assert await channel.store.is_opted_out(OURS, PERSON) is opted_out
    record = await channel.store.get_outbound(outbox_id)
    assert record is not None and record.error_code == error_code
