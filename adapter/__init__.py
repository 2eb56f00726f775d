"""sms-adapter: a self-hosted SMS channel for bots, on Twilio.

A bot is a Router with handlers:

    from adapter import Context, Keyword, Router

    router = Router()

    @router.message(Keyword("HELP"))
    async def help_(ctx: Context) -> None:
        await ctx.reply("Text me anything and I'll echo it.")

Run it with `SMS_ADAPTER_BOTS=mybot:router sms-adapter dev`.

Importing this package loads the bot API only (`adapter.bot`): no HTTP client, no
Twilio SDK, no server. The test helper and the server side load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapter.activity import Activity
from adapter.bot import (
    And,
    Contains,
    Context,
    F,
    Filter,
    From,
    HandlerTimeout,
    HasMedia,
    HistoryMessage,
    InvalidReplyOption,
    Keyword,
    MediaDownloadError,
    MediaFile,
    NoMatch,
    Not,
    Or,
    RecipientOptedOut,
    Regex,
    ReplyError,
    RetryLater,
    Router,
    StartsWith,
    StatusUpdate,
    To,
    TurnOver,
)

if TYPE_CHECKING:
    from adapter.runtime.channel import Channel
    from adapter.runtime.settings import Settings, load_settings
    from adapter.testing import BotConversation
    from adapter.web.app import create_app

__all__ = [
    "Activity",
    "And",
    "BotConversation",
    "Channel",
    "Contains",
    "Context",
    "F",
    "Filter",
    "From",
    "HandlerTimeout",
    "HasMedia",
    "HistoryMessage",
    "InvalidReplyOption",
    "Keyword",
    "MediaDownloadError",
    "MediaFile",
    "NoMatch",
    "Not",
    "Or",
    "RecipientOptedOut",
    "Regex",
    "ReplyError",
    "RetryLater",
    "Router",
    "Settings",
    "StartsWith",
    "StatusUpdate",
    "To",
    "TurnOver",
    "create_app",
    "load_settings",
]

# Names that live outside the bot API, imported on first use (PEP 562).
_LAZY = {
    "BotConversation": "adapter.testing",
    "Channel": "adapter.runtime.channel",
    "create_app": "adapter.web.app",
    "Settings": "adapter.runtime.settings",
    "load_settings": "adapter.runtime.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adapter' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
