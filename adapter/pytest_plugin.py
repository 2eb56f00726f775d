"""The `bot_conversation` pytest fixture, registered by the package (a `pytest11` entry
point), so any project that installs sms-adapter can use it with no conftest:

    def test_echo(bot_conversation: BotConversationFactory) -> None:
        chat = bot_conversation("mybot:router")
        chat.expect("hi", "You said: hi")

It makes `adapter.testing.BotConversation`s and closes them after the test, which runs
the bots' shutdown hooks. This module is imported by pytest in every project that has
the package installed, so it imports the test helper only when a test asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from adapter.bot.router import Router
    from adapter.testing import BotConversation


class BotConversationFactory(Protocol):
    def __call__(self, bot: Router | str, **options: Any) -> BotConversation: ...


@pytest.fixture
def bot_conversation() -> Iterator[BotConversationFactory]:
    """Make a `BotConversation` (same arguments); each is closed after the test. In
    `async def` tests use `async with BotConversation(...)` instead, so its hooks run on
    the test's event loop."""
    from adapter.testing import BotConversation

    made: list[BotConversation] = []

    def make(bot: Router | str, **options: Any) -> BotConversation:
        conversation = BotConversation(bot, **options)
        made.append(conversation)
        return conversation

    yield make
    for conversation in reversed(made):
        conversation.close()
