"""A stock Bot Framework bot, written the way Microsoft's Python samples write one
(botbuilder-core and botbuilder-integration-aiohttp, nothing of this project), for
the tests to run as a subprocess on loopback:

    python tests/botframework/stock_bot.py PORT

- a text gets "Echo: <text>";
- "card" gets a hero card with three buttons;
- "typing" gets a typing activity, then "done typing";
- POST /api/notify?conversation=ID sends "Proactive hello" to a conversation seen
  before, through `continue_conversation`, as the proactive-messages sample does;
- GET /api/seen lists the texts received, so a test can count deliveries.

Auth is off (no app id), as when the Bot Framework Emulator talks to a bot.
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web
from botbuilder.core import ActivityHandler, CardFactory, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
)
from botbuilder.schema import (
    ActionTypes,
    Activity,
    ActivityTypes,
    CardAction,
    ConversationReference,
    HeroCard,
)


class Config:
    APP_ID = ""
    APP_PASSWORD = ""


class StockBot(ActivityHandler):  # type: ignore[misc]
    def __init__(self, references: dict[str, ConversationReference], seen: list[str]) -> None:
        self.references = references
        self.seen = seen

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        reference = TurnContext.get_conversation_reference(activity)
        self.references[reference.conversation.id] = reference
        self.seen.append(activity.text)
        if activity.text == "card":
            card = HeroCard(
                title="Pick a size",
                text="Which one?",
                buttons=[
                    CardAction(type=ActionTypes.im_back, title=title, value=title)
                    for title in ("Small", "Medium", "Large")
                ],
            )
            await turn_context.send_activity(MessageFactory.attachment(CardFactory.hero_card(card)))
        elif activity.text == "typing":
            await turn_context.send_activity(Activity(type=ActivityTypes.typing))
            await turn_context.send_activity("done typing")
        else:
            await turn_context.send_activity(MessageFactory.text(f"Echo: {activity.text}"))


def main(port: int) -> None:
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(Config()))
    references: dict[str, ConversationReference] = {}
    seen: list[str] = []
    bot = StockBot(references, seen)

    async def messages(request: web.Request) -> web.Response:
        response: web.Response = await adapter.process(request, bot)
        return response

    async def notify(request: web.Request) -> web.Response:
        async def say_hello(turn_context: TurnContext) -> None:
            await turn_context.send_activity("Proactive hello")

        reference = references.get(request.query["conversation"])
        if reference is None:
            return web.json_response({"notified": 0}, status=404)
        await adapter.continue_conversation(reference, say_hello, Config.APP_ID)
        return web.json_response({"notified": 1})

    async def seen_texts(request: web.Request) -> web.Response:
        body: dict[str, Any] = {"texts": seen}
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    app.router.add_post("/api/notify", notify)
    app.router.add_get("/api/seen", seen_texts)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]))
