import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapter import HandlerTimeout, MediaDownloadError, StatusUpdate
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


# --- the rest of a bot's life: statuses, opt-out, media, hooks, errors ---------------------

life = Router("life")
life_events: list[str] = []


@life.on_startup
async def life_starts() -> None:
    life_events.append("startup")


@life.on_shutdown
async def life_ends() -> None:
    life_events.append("shutdown")


@life.message(Keyword("PHOTO"))
async def describe_photo(ctx: Context) -> None:
    try:
        photo = await ctx.download(ctx.message.media[0])
    except MediaDownloadError as error:
        await ctx.reply(f"could not fetch it: {type(error).__name__}")
        return
    await ctx.reply(f"{photo.content_type}, {photo.size} bytes")


@life.message(Keyword("BROKEN"))
async def broken(ctx: Context) -> None:
    await ctx.reply("never sent")
    raise KeyError("no such thing")


@life.message(Keyword("SLOW"))
async def slow(ctx: Context) -> None:
    await asyncio.sleep(10)


@life.message()
async def note(ctx: Context) -> None:
    ctx.state["opted_out"] = ctx.opted_out
    if ctx.text != "careless" and ctx.opted_out:
        return  # nothing can be sent to them; a reply would raise RecipientOptedOut
    await ctx.reply("noted")


@life.error(KeyError, HandlerTimeout)
async def apologise(ctx: Context, error: Exception) -> None:
    await ctx.reply(f"Sorry ({type(error).__name__})")


@life.status()
async def heard_status(update: StatusUpdate) -> None:
    life_events.append(f"{update.status} {update.message_sid} {update.body}")


@life.status("failed")
async def fail_loudly(update: StatusUpdate) -> None:
    raise RuntimeError(f"could not deliver {update.message_sid}")


def test_a_status_update_reaches_the_status_handlers_for_the_reply() -> None:
    life_events.clear()
    with BotConversation(life) as chat:
        chat.say("hello")
        chat.say("again")
        chat.status("delivered", reply=0)
        first, second = chat.reply_sids
        assert life_events == ["startup", f"delivered {first} noted"]
        assert [m.status for m in chat.transcript if m.sid in (first, second)] == [
            "delivered",
            "sent",
        ]
        # A status may not move backwards, and a handler that raises fails the test.
        chat.status("sent", reply=0)
        assert life_events[-1] == f"delivered {first} noted"
        with pytest.raises(RuntimeError, match=f"could not deliver {second}"):
            chat.status("failed")


def test_status_before_any_reply_is_refused() -> None:
    with pytest.raises(LookupError, match="has not replied yet"):
        BotConversation(life).status("delivered")


def test_stop_and_start_go_through_the_adapters_opt_out() -> None:
    chat = BotConversation(life)
    chat.expect("hi", "noted")
    chat.expect("STOP")  # recorded by the adapter; the bot never hears it
    assert chat.opted_out
    chat.expect("hi")  # the bot sees ctx.opted_out and does not reply
    assert chat.state == {"opted_out": True}
    # A reply all the same is refused (RecipientOptedOut), which fails no test: the
    # turn ends with nothing sent and nothing saved, as in the adapter.
    chat.expect("careless")
    assert chat.state == {"opted_out": True}
    chat.expect("START")
    assert not chat.opted_out
    chat.expect("hi", "noted")
    assert chat.state == {"opted_out": False}


def test_stop_reaches_the_bot_with_the_setting_on() -> None:
    chat = BotConversation(life, opt_out_to_bots=True)
    chat.say("STOP")
    assert chat.opted_out
    assert chat.state == {"opted_out": True}  # ctx.opted_out was already true


def test_a_21610_status_opts_the_person_out_as_twilio_does() -> None:
    chat = BotConversation(life)
    chat.say("hi")
    chat.status("undelivered", error_code=21610)
    assert chat.opted_out


def test_the_test_serves_the_media_the_bot_downloads() -> None:
    chat = BotConversation(life)
    chat.serve_media(PHOTO, b"\x89PNG....", "image/png")
    assert chat.say("photo", media=[PHOTO]) == ["image/png, 8 bytes"]
    missing = PHOTO.replace("ME1", "ME2")
    assert chat.say("photo", media=[missing]) == ["could not fetch it: MediaUnavailable"]
    # As in the adapter, URLs off Twilio's media hosts are refused.
    elsewhere = "https://example.com/cat.png"
    chat.serve_media(elsewhere, b"meow")
    assert chat.say("photo", media=[elsewhere]) == ["could not fetch it: MediaUrlNotAllowed"]


def test_hooks_run_before_the_first_text_and_at_close() -> None:
    life_events.clear()
    chat = BotConversation(life)
    assert life_events == []
    chat.say("hi")
    chat.say("hi")
    assert life_events == ["startup"]
    chat.close()
    assert life_events == ["startup", "shutdown"]


async def test_async_with_runs_the_hooks_on_the_tests_loop() -> None:
    life_events.clear()
    async with BotConversation(life) as chat:
        assert life_events == ["startup"]
        assert await chat.send("hi") == ["noted"]
    assert life_events == ["startup", "shutdown"]


def test_the_error_handlers_reply_is_what_the_test_sees() -> None:
    chat = BotConversation(life)
    assert chat.say("broken") == ["Sorry (KeyError)"]
    [error] = chat.errors
    assert isinstance(error, KeyError)
    assert [r.body for r in chat.replies] == ["Sorry (KeyError)"]


def test_a_handler_past_the_time_limit_meets_the_error_handler() -> None:
    chat = BotConversation(life, handler_timeout=0.1)
    assert chat.say("slow") == ["Sorry (HandlerTimeout)"]


def test_the_apology_setting_answers_for_a_bot_without_error_handler() -> None:
    chat = BotConversation(counter, error_reply="Sorry, try again.")
    assert chat.say("boom") == ["Sorry, try again."]
    assert isinstance(chat.errors[0], RuntimeError)


def test_the_fixture_is_registered_by_the_package(tmp_path: Path) -> None:
    (tmp_path / "test_uses_fixture.py").write_text(
        "from adapter.pytest_plugin import BotConversationFactory\n"
        "from tests.test_testing import life, life_events\n"
        "\n"
        "def test_one(bot_conversation: BotConversationFactory) -> None:\n"
        "    life_events.clear()\n"
        "    bot_conversation(life).expect('hi', 'noted')\n"
        "    bot_conversation('bots.echo:router').expect('hi', 'You said: hi')\n"
        "    assert life_events == ['startup']\n"
        "\n"
        "def test_two() -> None:  # the fixture closed the conversation after test_one\n"
        "    assert life_events == ['startup', 'shutdown']\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
