"""What bot authors import: Router, filters, Context, reply errors, status updates.

Nothing here knows HTTP, the store or Twilio's wire format.
"""

from adapter.bot.context import (
    Context,
    HandlerTimeout,
    InvalidReplyOption,
    NoMatch,
    RecipientOptedOut,
    ReplyError,
    RetryLater,
    TurnOver,
)
from adapter.bot.filters import (
    And,
    Contains,
    F,
    Filter,
    From,
    HasMedia,
    Keyword,
    Not,
    Or,
    Regex,
    StartsWith,
    To,
)
from adapter.bot.history import HistoryMessage
from adapter.bot.media import MediaDownloadError, MediaFile
from adapter.bot.router import Router, StatusUpdate

__all__ = [
    "And",
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
    "StartsWith",
    "StatusUpdate",
    "To",
    "TurnOver",
]
