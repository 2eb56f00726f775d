"""A message of the conversation, as `await ctx.history()` returns it.

Defined in the bot API so handlers can name the type; the history service
(`adapter.history.service`) builds these from what Twilio lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True)
class HistoryMessage:
    """One message of a conversation, as `ctx.history()` and the operator API show it."""

    sid: str
    direction: Direction  # "inbound": the person wrote it; "outbound": we (or our account) did
    from_: str
    to: str
    body: str
    status: str | None  # Twilio's: received, queued, sent, delivered, undelivered, failed...
    at: datetime  # when it was sent (created, while not yet sent); UTC
    num_media: int = 0  # Twilio's lists carry the count of media, not their URLs
    num_segments: int = 1
    error_code: int | None = None

    @property
    def inbound(self) -> bool:
        return self.direction == "inbound"

    def to_json(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "body": self.body,
            "status": self.status,
            "error_code": self.error_code,
            "num_media": self.num_media,
            "num_segments": self.num_segments,
            "at": self.at.isoformat(),
        }
