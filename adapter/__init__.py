"""sms-adapter: a self-hosted SMS channel for bots, on Twilio.

A bot is a Router with handlers:

    from adapter import Context, Router
    from adapter.filters import Keyword

    router = Router()

    @router.message(Keyword("HELP"))
    async def help_(ctx: Context) -> None:
        await ctx.reply("Text me anything and I'll echo it.")

Run it with `SMS_ADAPTER_BOTS=mybot:router sms-adapter dev`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapter.activity import Activity
from adapter.context import Context, ReplyError
from adapter.routing import Router, StatusUpdate
from adapter.testing import BotConversation

if TYPE_CHECKING:
    from adapter.app import Channel, create_app
    from adapter.settings import Settings, load_settings

__all__ = [
    "Activity",
    "BotConversation",
    "Channel",
    "Context",
    "ReplyError",
    "Router",
    "Settings",
    "StatusUpdate",
    "create_app",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    # The server side is imported on first use, so `from adapter import Router` in a
    # bot module stays light and free of import cycles.
    if name in {"Channel", "create_app"}:
        from adapter import app

        return getattr(app, name)
    if name in {"Settings", "load_settings"}:
        from adapter import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'adapter' has no attribute {name!r}")
