"""Twilio's message statuses: one enum, the order a message moves through them, and
which of them are final. The store keeps statuses forward-only by this order; the bot
API checks status handlers' filters against it.

A status may only replace one of lower rank: a late "sent" never overwrites
"delivered". Statuses of equal rank are alternatives (a message is delivered *or*
undelivered), and the first one recorded stays.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class MessageStatus(StrEnum):
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RECEIVING = "receiving"
    RECEIVED = "received"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    PARTIALLY_DELIVERED = "partially_delivered"
    CANCELED = "canceled"
    READ = "read"

    @property
    def rank(self) -> int:
        return STATUS_RANK[self.value]

    @property
    def is_final(self) -> bool:
        return self.value in FINAL_STATUSES


STATUS_RANK: Final[dict[str, int]] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "receiving": 3,
    "received": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "partially_delivered": 5,
    "canceled": 5,
    "read": 6,
}
# After these Twilio reports nothing more about a message (but "read", which may
# follow "delivered" on WhatsApp and still outranks it).
FINAL_STATUSES: Final = frozenset(
    {"delivered", "undelivered", "failed", "partially_delivered", "canceled", "read", "received"}
)
MESSAGE_STATUSES: Final = frozenset(status.value for status in MessageStatus)

assert set(STATUS_RANK) == MESSAGE_STATUSES, "every status has a rank"
