"""The Router that stands for a Bot Framework bot in the route table.

Its one handler posts each text to the bot; the replies come back through the connector,
not through `ctx.reply()`. The work is done by the bridge the channel binds at start-up
(`bind`), so the route table can be built, and checked, before the channel exists.
"""

from __future__ import annotations

from typing import Protocol

from adapter.bot.context import Context
from adapter.bot.router import Router
from adapter.botframework.endpoint import BotEndpoint, parse_endpoint


class TurnRunner(Protocol):
    async def run_turn(self, router: RemoteBotRouter, ctx: Context) -> None: ...


class RemoteBotRouter(Router):
    def __init__(self, endpoint: BotEndpoint) -> None:
        super().__init__(endpoint.shown)
        self.endpoint = endpoint
        self._runner: TurnRunner | None = None
        self.message()(self._post_to_bot)

    def bind(self, runner: TurnRunner) -> None:
        self._runner = runner

    async def _post_to_bot(self, ctx: Context) -> None:
        if self._runner is None:
            raise RuntimeError(
                f"{self.endpoint.shown} is a Bot Framework bot: it runs only inside the "
                "adapter (sms-adapter dev or serve), which posts each text to it"
            )
        await self._runner.run_turn(self, ctx)


def remote_bot_router(
    spec: str,
    auth: str | None = None,
    *,
    app_id: str | None = None,
    scope: str | None = None,
    allowed_callers: tuple[str, ...] | None = None,
) -> RemoteBotRouter:
    """The Router for `botframework+URL`; ValueError if the spec is not a usable URL."""
    endpoint = parse_endpoint(
        spec, auth, app_id=app_id, scope=scope, allowed_callers=allowed_callers
    )
    return RemoteBotRouter(endpoint)
