import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapter.bot.context import (
    Context,
    EmptyReply,
    InvalidMediaUrl,
    InvalidReplyOption,
    ReplyError,
    ReplyTooLong,
    StateNotSerializable,
    TooManyMedia,
    jsonable_state,
)
from adapter.testing import inbound_message
from adapter.twilio.messages import OutboundMessage
from adapter.twilio.send_options import SendOptions

PERSON = "+15551230000"
OURS = "+15005550006"
SERVICE = "MG" + "a" * 32
PHOTO = "https://example.com/cat.jpg"


def context(**kwargs: Any) -> Context:
    message = inbound_message("hi there", person=PERSON, ours=OURS)
    return Context(message=message, bot_name="test", **kwargs)


async def test_a_reply_goes_to_the_person_from_the_number_they_texted() -> None:
    ctx = context(reply_from=OURS)
    await ctx.reply("hello", media=[PHOTO])
    await ctx.reply("again")
    assert ctx.replies == [
        OutboundMessage(to=PERSON, from_=OURS, body="hello", media_urls=(PHOTO,)),
        OutboundMessage(to=PERSON, from_=OURS, body="again"),
    ]


async def test_without_a_sender_replies_come_from_the_number_texted() -> None:
    ctx = context()
    await ctx.reply("hello")
    assert ctx.replies == [OutboundMessage(to=PERSON, from_=OURS, body="hello")]


async def test_a_route_through_a_messaging_service_replies_through_it() -> None:
    ctx = context(reply_messaging_service_sid=SERVICE)
    await ctx.reply("hello")
    assert ctx.replies == [OutboundMessage(to=PERSON, messaging_service_sid=SERVICE, body="hello")]


def test_a_context_replies_from_a_number_or_a_service_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        context(reply_from=OURS, reply_messaging_service_sid=SERVICE)


def test_the_handler_sees_the_texts_activity_and_message() -> None:
    ctx = context()
    assert ctx.text == "hi there"
    assert ctx.activity.text == "hi there"
    assert ctx.activity.from_.id == PERSON
    assert ctx.message.to == OURS
    assert not ctx.has_match
    assert ctx.state == {}
    assert ctx.bot_name == "test"


@pytest.mark.parametrize(
    ("text", "media", "error", "message"),
    [
        ("", (), EmptyReply, "needs some text or a media URL"),
        ("  \n", (), EmptyReply, "needs some text or a media URL"),
        ("", [PHOTO] * 11, TooManyMedia, "at most 10 media URLs and this one has 11"),
        ("", PHOTO, InvalidMediaUrl, "write media=[url]"),
        ("see", ["/cat.jpg"], InvalidMediaUrl, "'/cat.jpg' is not an absolute http(s) URL"),
        ("see", ["cat.jpg"], InvalidMediaUrl, "'cat.jpg' is not an absolute http(s) URL"),
        ("see", ["ftp://example.com/cat.jpg"], InvalidMediaUrl, "not an absolute http(s) URL"),
        ("see", ["https://"], InvalidMediaUrl, "not an absolute http(s) URL"),
        ("see", [PHOTO, ""], InvalidMediaUrl, "'' is not an absolute http(s) URL"),
        ("see", [PHOTO, None], InvalidMediaUrl, "None is not an absolute http(s) URL"),
    ],
)
async def test_a_reply_that_cannot_be_sent_is_refused_and_not_buffered(
    text: str, media: Any, error: type[ReplyError], message: str
) -> None:
    ctx = context()
    await ctx.reply("before")
    with pytest.raises(error, match=re.escape(message)):
        await ctx.reply(text, media=media)
    assert [r.body for r in ctx.replies] == ["before"]


@pytest.mark.parametrize(
    ("text", "media"),
    [
        ("", [PHOTO]),
        ("x" * 1600, ()),
        ("ten", [f"http://example.com/{n}.png" for n in range(10)]),
        ("é" * 1600, ()),
    ],
)
async def test_replies_at_the_limits_are_accepted(text: str, media: list[str]) -> None:
    ctx = context()
    await ctx.reply(text, media=media)
    assert ctx.replies[0].media_urls == tuple(media)


def test_reply_errors_are_value_errors_a_bot_can_catch_together() -> None:
    for error in (EmptyReply, ReplyTooLong, TooManyMedia, InvalidMediaUrl):
        assert issubclass(error, ReplyError)
    assert issubclass(ReplyError, ValueError)


async def test_a_reply_text_must_be_a_string() -> None:
    ctx = context()
    with pytest.raises(TypeError, match="takes the text as a str, got int"):
        await ctx.reply(42)  # type: ignore[arg-type]
    assert ctx.replies == []


async def test_history_without_a_history_service_says_so() -> None:
    with pytest.raises(NotImplementedError, match="history service is not configured"):
        await context().history()


async def test_history_asks_the_provider_for_the_limit() -> None:
    asked: list[int] = []

    async def provider(limit: int) -> list[Any]:
        asked.append(limit)
        return ["older", "newer"][-limit:]

    ctx = context(history_provider=provider)
    assert await ctx.history() == ["older", "newer"]
    assert await ctx.history(limit=1) == ["newer"]
    assert asked == [20, 1]
    with pytest.raises(ValueError, match="at least 1"):
        await ctx.history(limit=0)


@pytest.mark.parametrize(
    ("state", "restored"),
    [
        ({}, {}),
        ({"name": "Ann", "count": 2, "ok": True, "none": None}, None),
        ({"tickets": [{"number": 1, "photos": []}]}, None),
        ({"pair": (1, 2)}, {"pair": [1, 2]}),
        ({"by_id": {7: "seven"}}, {"by_id": {"7": "seven"}}),
    ],
)
def test_state_is_what_a_save_and_a_load_give_back(
    state: dict[str, Any], restored: dict[str, Any] | None
) -> None:
    assert jsonable_state(state) == (state if restored is None else restored)


def _self_containing() -> dict[str, Any]:
    loop: list[Any] = []
    loop.append(loop)
    return {"loop": loop}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"when": datetime(2024, 1, 1, tzinfo=UTC)}, "ctx.state['when'] is a datetime"),
        ({"cart": ["ok", {"tags": {"a"}}]}, "ctx.state['cart'][1]['tags'] is a set"),
        ({"score": math.nan}, "ctx.state['score'] is the float nan"),
        ({"seen": {(1, 2): True}}, "ctx.state['seen'] key (1, 2) is a tuple"),
        (_self_containing(), "ctx.state['loop'][0] is a list that contains itself"),
        ([1, 2], "ctx.state must stay a dict, but it was set to a list"),
    ],
)
def test_state_json_cannot_hold_is_named_by_its_place(state: Any, message: str) -> None:
    with pytest.raises(StateNotSerializable, match=re.escape(message)):
        jsonable_state(state)


# --- send options ----------------------------------------------------------------------

TEMPLATE = "HX" + "c" * 32
FIXED_NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


async def test_each_send_option_rides_with_the_reply() -> None:
    ctx = context(reply_messaging_service_sid=SERVICE, clock=lambda: FIXED_NOW)
    send_at = FIXED_NOW + timedelta(hours=2)
    await ctx.reply(
        "Your code is 123456",
        validity_period=timedelta(minutes=10),
        max_price="0.05",
        smart_encoded=True,
        shorten_urls=True,
        send_as_mms=False,
        send_at=send_at,
    )
    await ctx.reply("", content_sid=TEMPLATE, content_variables={"1": "Ana"})

    first, template = ctx.replies
    assert first.options == SendOptions(
        validity_period=600,
        max_price="0.05",
        smart_encoded=True,
        shorten_urls=True,
        send_as_mms=False,
        send_at=send_at,
    )
    assert (template.body, template.options.content_sid) == ("", TEMPLATE)
    assert template.options.content_variables == {"1": "Ana"}


@pytest.mark.parametrize(
    ("options", "argument"),
    [
        ({"validity_period": 36_001}, "validity_period"),
        ({"max_price": 0.05}, "max_price"),
        ({"send_at": FIXED_NOW + timedelta(hours=1)}, "send_at"),  # no Messaging Service
        ({"shorten_urls": True}, "shorten_urls"),  # no Messaging Service either
        ({"content_sid": "HXnope"}, "content_sid"),
        ({"content_variables": {"1": "x"}}, "content_variables"),
    ],
)
async def test_a_bad_option_raises_a_reply_error_naming_it_and_queues_nothing(
    options: dict[str, Any], argument: str
) -> None:
    ctx = context(reply_from=OURS, clock=lambda: FIXED_NOW)
    with pytest.raises(InvalidReplyOption, match=f"ctx.reply\\(\\) {argument}: ") as refused:
        await ctx.reply("hello", **options)
    assert isinstance(refused.value, ReplyError)
    assert refused.value.argument == argument
    assert ctx.replies == []


async def test_route_defaults_apply_under_the_replys_own_options() -> None:
    defaults = SendOptions(validity_period=900, smart_encoded=True)
    ctx = context(reply_from=OURS, send_defaults=defaults)
    await ctx.reply("plain")
    await ctx.reply("urgent", validity_period=60)
    assert [r.options for r in ctx.replies] == [
        defaults,
        SendOptions(validity_period=60, smart_encoded=True),
    ]


async def test_a_split_reply_keeps_its_options_on_every_part_and_the_template_on_the_first() -> (
    None
):
    ctx = context(reply_from=OURS)
    await ctx.reply("word " * 400, validity_period=600, content_sid=TEMPLATE)
    assert len(ctx.replies) == 2
    assert [r.options.validity_period for r in ctx.replies] == [600, 600]
    assert [r.options.content_sid for r in ctx.replies] == [TEMPLATE, None]


def test_segments_show_what_smart_encoding_saves() -> None:
    curly = "\u201cThanks\u201d \u2013 see you soon\u2026 " * 4  # 100 characters
    ctx = context()
    assert ctx.segments(curly) == 2  # one curly quote: all UCS-2, 67 a segment
    assert ctx.segments(curly, smart_encoded=True) == 1
    assert context(send_defaults=SendOptions(smart_encoded=True)).segments(curly) == 1
