import pytest

from adapter.testing import BotConversation

MENU = "Text me anything and I'll echo it."


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("hello", "You said: hello"),
        ("help", MENU),
        (" HELP ", MENU),
        ("help me", "You said: help me"),
        ("¿qué tal? 👋", "You said: ¿qué tal? 👋"),
    ],
)
def test_echo(text: str, reply: str) -> None:
    BotConversation("bots.echo:router").expect(text, reply)


def test_echo_replies_from_the_number_the_person_texted() -> None:
    chat = BotConversation("bots.echo:router", person="+447700900123", ours="+15005550006")
    chat.say("hi")
    [reply] = chat.replies
    assert (reply.to, reply.from_) == ("+447700900123", "+15005550006")
