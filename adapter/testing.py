"""Test a bot as a conversation, with no server, store or Twilio account:

    from adapter.testing import BotConversation

    def test_help() -> None:
        chat = BotConversation("bots.echo:router")
        chat.expect("hello", "You said: hello")
        assert chat.say("help") == ["Text me anything and I'll echo it."]

Each text takes the path a real one takes after the network: a form like Twilio's
webhook, parsed by the webhook's own parser, then `Router.dispatch` with a `Context`.
The conversation's state is saved as JSON between texts, as the adapter saves it, so a
bot that keeps something JSON cannot hold in `ctx.state` fails here as it would there.
In `async def` tests use `await chat.send(...)`; `say` and `expect` are for plain ones.
`ctx.history()` answers from the conversation so far (`chat.transcript`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from adapter.bot.context import Context, jsonable_state
from adapter.bot.router import Router
from adapter.devtools.emulator.inbound import inbound_webhook_form
from adapter.devtools.emulator.state import INBOUND, StoredMessage, media_at, new_sid
from adapter.history.service import HistoryMessage
from adapter.runtime.bot_routes import load_bot
from adapter.segments import count_segments
from adapter.twilio.limits import MAX_MEDIA
from adapter.twilio.messages import InboundMessage, OutboundMessage
from adapter.twilio.webhook_form import parse_inbound

ACCOUNT_SID = "AC" + "0" * 32


class BotConversation:
    def __init__(
        self,
        bot: Router | str,
        *,
        person: str = "+15551230000",
        ours: str = "+15005550006",
    ) -> None:
        self.router = bot if isinstance(bot, Router) else load_bot(bot)
        self.bot_name = bot if isinstance(bot, str) else (bot.name or "bot")
        self.person = person
        self.ours = ours
        self.state: dict[str, Any] = {}
        self.replies: list[OutboundMessage] = []  # every reply so far, oldest first
        self.handled = False  # whether a handler matched the last text
        # What `ctx.history()` answers: every text and reply so far, as if all delivered.
        self.transcript: list[HistoryMessage] = []

    async def send(self, text: str, *, media: Sequence[str] = ()) -> list[str]:
        """Text the bot; return the bodies of its replies to this text."""
        message = inbound_message(text, person=self.person, ours=self.ours, media=media)
        self.transcript.append(
            HistoryMessage(
                sid=message.message_sid,
                direction="inbound",
                from_=self.person,
                to=self.ours,
                body=text,
                status="received",
                at=message.received_at,
                num_media=len(media),
            )
        )

        async def history(limit: int) -> list[HistoryMessage]:
            # As in the adapter: the latest messages, oldest first, this text included.
            # (`ctx.history()` refuses a limit below 1 before asking.)
            return self.transcript[-limit:]

        ctx = Context(
            message=message,
            state=jsonable_state(self.state),
            reply_from=self.ours,
            bot_name=self.bot_name,
            history_provider=history,
        )
        self.handled = await self.router.dispatch(ctx)
        # Like the adapter: a turn whose state cannot be saved keeps none of its replies.
        self.state = jsonable_state(ctx.state)
        self.replies += ctx.replies
        now = datetime.now(UTC)
        self.transcript += [
            HistoryMessage(
                sid=new_sid(bool(reply.media_urls)),
                direction="outbound",
                from_=self.ours,
                to=self.person,
                body=reply.body,
                status="delivered",
                at=now,
                num_media=len(reply.media_urls),
            )
            for reply in ctx.replies
        ]
        return [reply.body for reply in ctx.replies]

    def say(self, text: str, *, media: Sequence[str] = ()) -> list[str]:
        """`send` for tests that are plain functions."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.send(text, media=media))
        raise RuntimeError("say() and expect() are for plain test functions; await send() here")

    def expect(self, text: str, *replies: str) -> None:
        """Text the bot and assert it answers exactly `replies`, in order."""
        actual = self.say(text)
        if actual != list(replies):
            raise AssertionError(
                f"after the text {text!r} the bot replied:\n{_listed(actual, self.handled)}\n"
                f"but the test expected:\n{_listed(list(replies), True)}"
            )


def inbound_message(
    text: str,
    *,
    person: str = "+15551230000",
    ours: str = "+15005550006",
    media: Sequence[str] = (),
) -> InboundMessage:
    """The message the webhook would make of a text from `person` to `ours`, with the
    form Twilio posts (for testing one handler or filter: `Context(message=..., ...)`).

    The form is the one the Twilio emulator posts, so both stay as Twilio's."""
    if isinstance(media, str) or len(media) > MAX_MEDIA:
        raise ValueError(f"media= takes a list of at most {MAX_MEDIA} URLs")
    now = datetime.now(UTC)
    text_as_received = StoredMessage(
        sid=new_sid(bool(media)),
        seq=0,
        direction=INBOUND,
        from_=person,
        to=ours,
        body=text,
        status="received",
        num_segments=count_segments(text),
        date_created=now,
        date_updated=now,
        media=tuple(media_at(url) for url in media),
    )
    form = inbound_webhook_form(text_as_received, ACCOUNT_SID)
    return parse_inbound(list(form.items()))


def _listed(replies: list[str], handled: bool) -> str:
    if not replies:
        return "  (nothing)" if handled else "  (nothing: no handler matched)"
    return "\n".join(f"  {reply!r}" for reply in replies)
