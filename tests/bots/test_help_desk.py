import logging

import pytest

from adapter.bot.router import StatusUpdate
from adapter.testing import BotConversation
from bots.help_desk import MENU, router

PHOTO = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"


def chat() -> BotConversation:
    return BotConversation(router)


@pytest.mark.parametrize("text", ["help", "MENU", " hello ", "What can you do?"])
def test_greetings_and_help_show_the_menu(text: str) -> None:
    chat().expect(text, f"Hi! {MENU}")


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("order 1001", "Order #1001 is shipped on Monday."),
        ("Where is my ORDER #1002?", "Order #1002 is being packed."),
        ("order#1003", "Order #1003 is delivered."),
        ("reorder 1001", "Sorry, I didn't get that. Text HELP for the menu."),
        ("order 999", "We can't find order #999: check the number on your receipt."),
    ],
)
def test_orders_are_looked_up_by_the_number_in_the_text(text: str, reply: str) -> None:
    chat().expect(text, reply)


def test_the_bot_remembers_a_name_for_the_rest_of_the_conversation() -> None:
    conversation = chat()
    conversation.expect("my name is ann", "Nice to meet you, Ann!")
    conversation.expect("help", f"Hi, Ann! {MENU}")
    conversation.expect("blah", "Sorry, Ann, I didn't get that. Text HELP for the menu.")
    assert BotConversation(router).say("help") == [f"Hi! {MENU}"]  # someone else


def test_tickets_are_numbered_per_person_and_listed() -> None:
    conversation = chat()
    conversation.expect("tickets", "You have no tickets. Text TICKET and your problem to open one.")
    conversation.expect("ticket printer is jammed", "Ticket #1 is open. Send a photo to add it.")
    conversation.expect("Ticket  no ink\nat all", "Ticket #2 is open. Send a photo to add it.")
    conversation.expect("TICKETS", "#1: printer is jammed\n#2: no ink\nat all")


def test_a_photo_is_added_to_the_latest_ticket() -> None:
    conversation = chat()
    assert conversation.say("", media=[PHOTO]) == [
        "Thanks for the photo! Text TICKET and your problem first."
    ]
    conversation.say("ticket cracked screen")
    assert conversation.say("here", media=[PHOTO]) == ["Added to ticket #1."]
    assert conversation.state["tickets"][0]["photos"] == [PHOTO]


# Every keyword Twilio opts a person out on, as the person may type it.
@pytest.mark.parametrize(
    "word", ["STOP", "stopall", "Unsubscribe", "cancel", "END", "quit", "revoke", "OPTOUT"]
)
def test_stop_forgets_the_person_and_sends_nothing(word: str) -> None:
    # The bot hears STOP only with SMS_ADAPTER_OPT_OUT_TO_BOTS on.
    conversation = BotConversation(router, opt_out_to_bots=True)
    conversation.say("my name is ann")
    conversation.expect(word)
    assert conversation.state == {}
    assert conversation.opted_out


def test_by_default_stop_is_recorded_by_the_adapter_and_the_bot_never_hears_it() -> None:
    conversation = chat()
    conversation.say("my name is ann")
    conversation.expect("STOP")
    assert conversation.state == {"name": "Ann"}
    assert conversation.opted_out
    # Until START, the bot's replies go nowhere (and fail no test).
    conversation.expect("help")
    conversation.expect("START")
    conversation.expect("help", f"Hi, Ann! {MENU}")


def test_anything_else_gets_the_fallback() -> None:
    chat().expect("ticket", "Sorry, I didn't get that. Text HELP for the menu.")


@pytest.mark.parametrize(
    ("status", "handled"), [("failed", 1), ("undelivered", 1), ("delivered", 0)]
)
async def test_undelivered_replies_are_logged(
    status: str, handled: int, caplog: pytest.LogCaptureFixture
) -> None:
    update = StatusUpdate(
        message_sid="SM" + "2" * 32,
        status=status,
        error_code=30006 if handled else None,
        to="+15551230000",
        from_="+15005550006",
        body="Order #1001 is shipped on Monday.",
        conversation="+15005550006|+15551230000",
    )
    with caplog.at_level(logging.WARNING, logger="bots.help_desk"):
        assert await router.dispatch_status(update) == handled
    warned = [r.getMessage() for r in caplog.records]
    assert warned == ([f"reply SM{'2' * 32} was not delivered (error 30006)"] if handled else [])
