import re
from datetime import UTC, datetime
from typing import Any

import pytest

from adapter.bot.context import Context, StateNotSerializable
from adapter.bot.filters import HasMedia, Keyword
from adapter.bot.router import Router
from adapter.testing import BotConversation
from adapter.twilio.messages import InboundMessage, OutboundMessage

PHOTO = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1.png"

counter = Router("counter")


@counter.message(Keyword("RESET"))
async def reset(ctx: Context) -> None:
    ctx.state.clear()


@counter.message(Keyword("QUIET"))
async def quiet(ctx: Context) -> None:
    pass


@counter.message(HasMedia())
async def photo(ctx: Context) -> None:
    await ctx.reply(f"got {len(ctx.message.media)}", media=[m.url for m in ctx.message.media])


@counter.message(Keyword("TWICE"))
async def twice(ctx: Context) -> None:
    await ctx.reply("one")
    await ctx.reply("two")


@counter.message(Keyword("TUPLE"))
async def store_tuple(ctx: Context) -> None:
    ctx.state["pair"] = (1, 2)


@counter.message(Keyword("PAIR"))
async def show_pair(ctx: Context) -> None:
    await ctx.reply(repr(ctx.state.get("pair")))


@counter.message(Keyword("CLOCK"))
async def store_datetime(ctx: Context) -> None:
    ctx.state["when"] = datetime.now(UTC)
    await ctx.reply("noted")


@counter.message(Keyword("BOOM"))
async def boom(ctx: Context) -> None:
    ctx.state["count"] = 1000
    await ctx.reply("lost")
    raise RuntimeError("boom")


@counter.message(Keyword("COUNT"))
async def count(ctx: Context) -> None:
    ctx.state["count"] = ctx.state.get("count", 0) + 1
    await ctx.reply(str(ctx.state["count"]))


def test_state_is_kept_across_turns() -> None:
    chat = BotConversation(counter)
    assert [chat.say("count"), chat.say("count"), chat.say("reset"), chat.say("count")] == [
        ["1"],
        ["2"],
        [],
        ["1"],
    ]
    assert chat.state == {"count": 1}


def test_replies_collect_every_message_so_far() -> None:
    chat = BotConversation(counter, person="+447700900123", ours="+15005550009")
    assert chat.say("twice") == ["one", "two"]
    assert chat.say("count") == ["1"]
    assert chat.replies == [
        OutboundMessage(to="+447700900123", from_="+15005550009", body=body)
        for body in ("one", "two", "1")
    ]


def test_a_state_set_by_the_test_is_what_the_bot_sees() -> None:
    chat = BotConversation(counter)
    chat.state["count"] = 41
    assert chat.say("count") == ["42"]


def test_state_round_trips_through_json_between_turns() -> None:
    chat = BotConversation(counter)
    chat.say("tuple")
    assert chat.say("pair") == ["[1, 2]"]


def test_state_json_cannot_hold_fails_the_turn_naming_the_key() -> None:
    chat = BotConversation(counter)
    chat.say("count")
    with pytest.raises(StateNotSerializable, match=r"ctx.state\['when'\] is a datetime"):
        chat.say("clock")
    # As in the adapter, the failed turn left neither its state nor its replies.
    assert chat.state == {"count": 1}
    assert [r.body for r in chat.replies] == ["1"]


def test_a_bot_that_raises_fails_the_test_and_keeps_nothing_of_the_turn() -> None:
    chat = BotConversation(counter)
    with pytest.raises(RuntimeError, match="boom"):
        chat.say("boom")
    assert chat.state == {}
    assert chat.replies == []


def test_the_bot_sees_a_text_shaped_like_twilios() -> None:
    seen: list[InboundMessage] = []
    spy = Router()

    @spy.message()
    def record(ctx: Context) -> None:
        seen.append(ctx.message)
        assert ctx.activity.id == ctx.message.message_sid

    chat = BotConversation(spy, person="+15551230000", ours="+15005550006")
    chat.say("hello")
    chat.say("hello")
    first, second = seen
    assert re.fullmatch(r"SM[0-9a-f]{32}", first.message_sid)
    assert first.message_sid != second.message_sid
    assert re.fullmatch(r"AC[0-9a-f]{32}", first.account_sid)
    assert (first.from_, first.to, first.body) == ("+15551230000", "+15005550006", "hello")
    assert first.raw["MessageSid"] == first.raw["SmsSid"] == first.message_sid
    assert first.raw["NumMedia"] == "0"
    assert first.raw["ApiVersion"] == "2010-04-01"
    assert first.from_place.country == "US"


def test_media_arrive_as_an_mms_with_their_content_types() -> None:
    seen: list[InboundMessage] = []
    spy = Router()

    @spy.message()
    def record(ctx: Context) -> None:
        seen.append(ctx.message)

    BotConversation(spy).say("look", media=[PHOTO, "https://example.com/clip"])
    [message] = seen
    assert message.message_sid.startswith("MM")
    assert [(m.url, m.content_type) for m in message.media] == [
        (PHOTO, "image/png"),
        ("https://example.com/clip", "application/octet-stream"),
    ]
    assert message.raw["MediaUrl1"] == "https://example.com/clip"


def test_a_bot_can_be_named_by_its_spec() -> None:
    chat = BotConversation("bots.echo:router")
    assert chat.say("hi") == ["You said: hi"]
    assert chat.bot_name == "bots.echo:router"


def test_expect_passes_when_the_replies_match() -> None:
    chat = BotConversation(counter)
    chat.expect("twice", "one", "two")
    chat.expect("quiet")
    chat.expect("count", "1")


@pytest.mark.parametrize(
    ("text", "expected", "shown"),
    [
        ("twice", ("one",), "the bot replied:\n  'one'\n  'two'\nbut the test expected:\n  'one'"),
        ("quiet", ("hi",), "the bot replied:\n  (nothing)\n"),
        ("unknown", ("hi",), "the bot replied:\n  (nothing: no handler matched)\n"),
        ("count", (), "after the text 'count' the bot replied:\n  '1'\nbut the test"),
    ],
)
def test_expect_shows_what_the_bot_actually_said(
    text: str, expected: tuple[str, ...], shown: str
) -> None:
    with pytest.raises(AssertionError) as failure:
        BotConversation(counter).expect(text, *expected)
    assert shown in str(failure.value)


async def test_async_tests_await_send() -> None:
    chat = BotConversation(counter)
    assert await chat.send("count") == ["1"]
    assert await chat.send("look", media=[PHOTO]) == ["got 1"]
    assert chat.replies[-1].media_urls == (PHOTO,)


async def test_say_inside_an_event_loop_points_to_send() -> None:
    chat = BotConversation(counter)
    with pytest.raises(RuntimeError, match=r"await send\(\) here"):
        chat.say("count")


@pytest.mark.parametrize("media", ["https://example.com/a.png", [PHOTO] * 11])
def test_media_must_be_a_list_of_at_most_ten_urls(media: Any) -> None:
    with pytest.raises(ValueError, match="list of at most 10 URLs"):
        BotConversation(counter).say("look", media=media)


def test_history_in_a_test_conversation_is_the_conversation_so_far() -> None:
    from adapter import Context, Router

    router = Router()

    @router.message()
    async def recall(ctx: Context) -> None:
        earlier = await ctx.history(limit=3)
        await ctx.reply(",".join(("<" if m.inbound else ">") + m.body[:3] for m in earlier))

    chat = BotConversation(router)
    assert chat.say("one") == ["<one"]
    assert chat.say("two") == ["<one,><on,<two"]
    # The latest three, oldest first, the text being handled last.
    assert chat.say("six") == ["<two,><on,<six"]
