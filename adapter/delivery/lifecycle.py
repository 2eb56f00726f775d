"""The bots' startup and shutdown hooks (`@router.on_startup`, `@router.on_shutdown`),
run once per process however many routes share a bot.

Startup runs before the workers take the first text; a hook that raises stops start-up
with a message naming the bot (and the bots already started are shut down again).
Shutdown runs after the last text was handled, in the reverse order; a hook that raises
is logged and the others still run.
"""

from __future__ import annotations

import logging

from adapter.bot.router import Hook, run_hook
from adapter.config_error import ConfigError
from adapter.delivery.routes import RouteTable

logger = logging.getLogger("adapter.lifecycle")


class BotStartupError(ConfigError):
    """A bot's startup hook raised; the message names the bot and the hook."""


class BotLifecycle:
    def __init__(self, routes: RouteTable) -> None:
        # (bot name, hooks) per distinct bot, in route order.
        self._bots: list[tuple[str, list[Hook], list[Hook]]] = []
        seen: set[int] = set()
        for route in routes.routes:
            if id(route.router) in seen:
                continue
            seen.add(id(route.router))
            self._bots.append(
                (route.bot_name, route.router.startup_hooks(), route.router.shutdown_hooks())
            )
        self._started: list[tuple[str, list[Hook]]] = []

    async def start(self) -> None:
        ran: set[Hook] = set()  # a router included in two bots starts once
        for bot, startup, shutdown in self._bots:
            for hook in startup:
                if hook in ran:
                    continue
                ran.add(hook)
                try:
                    await run_hook(hook)
                except Exception as error:
                    logger.error("bot %s: startup hook %s raised", bot, _name(hook), exc_info=error)
                    await self.stop()
                    raise BotStartupError(
                        f"bot {bot}: its startup hook {_name(hook)} raised "
                        f"{type(error).__name__}: {error}"
                    ) from error
            self._started.append((bot, shutdown))

    async def stop(self) -> None:
        ran: set[Hook] = set()
        while self._started:
            bot, shutdown = self._started.pop()
            for hook in shutdown:
                if hook in ran:
                    continue
                ran.add(hook)
                try:
                    await run_hook(hook)
                except Exception:
                    logger.exception("bot %s: shutdown hook %s raised", bot, _name(hook))


def _name(hook: Hook) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)
