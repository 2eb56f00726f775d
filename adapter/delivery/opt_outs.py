"""Who asked not to be texted, kept in the store, and honoured before every send.

State is per (one of our senders, person): a sender is a number (or `whatsapp:` address)
or a Messaging Service SID. A STOP texted to a number that belongs to a Messaging Service
opts the person out of both, since Twilio blocks the whole service. The state changes
when a person texts a STOP or START keyword (`note_inbound`, from the dispatcher; on
WhatsApp too, where Twilio itself ignores them) and
when Twilio refuses a send with error 21610, at once or later in a status callback
(`note_unsubscribed`). Replies are then refused in `ctx.reply()` (the dispatcher tells
the Context) and queued sends in the sender, which marks them failed with 21610 without
calling Twilio.
"""

from __future__ import annotations

import logging

from adapter.bot.context import RecipientOptedOut
from adapter.logs import message_fields
from adapter.store.base import Store
from adapter.twilio.messages import InboundMessage, OutboundMessage
from adapter.twilio.opt_out import OptOutType, opt_out_type

logger = logging.getLogger("adapter.delivery.opt_outs")


def reaches_bots(kind: OptOutType | None, opt_out_to_bots: bool) -> bool:
    """Whether a text goes on to the bots. HELP always does (bots answer it); STOP and
    START only if configured, since Twilio itself confirms them to the person."""
    if kind in (OptOutType.STOP, OptOutType.START):
        return opt_out_to_bots
    return True


class OptOuts:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def note_inbound(self, message: InboundMessage) -> OptOutType | None:
        """Record a STOP or START the person texted; return the text's opt-out type."""
        kind = opt_out_type(message.body, message.opt_out_type)
        if kind is OptOutType.HELP or kind is None:
            return kind
        stopped = kind is OptOutType.STOP
        reason = message.body.strip().upper() or str(kind)
        for ours in _senders(message.to, message.messaging_service_sid):
            await self._store.set_opted_out(ours, message.from_, stopped, reason)
        logger.info(
            "%s opted %s texts from %s (%s)",
            message.from_,
            "out of" if stopped else "back into",
            message.to,
            reason,
            extra=message_fields(message.message_sid, message.conversation),
        )
        return kind

    async def note_unsubscribed(self, message: OutboundMessage, reason: str) -> None:
        """Twilio refused to text the person (21610): they opted out where we could not see."""
        for ours in _senders(message.from_, message.messaging_service_sid):
            await self._store.set_opted_out(ours, message.to, True, reason)
        logger.info(
            "%s is opted out of texts from %s (%s)",
            message.to,
            _sender(message),
            reason,
            extra=message_fields(conversation=message.conversation),
        )

    async def is_opted_out(self, person: str, *senders: str | None) -> bool:
        """Whether `person` opted out of any of `senders` (None entries are skipped)."""
        for ours in _senders(*senders):
            if await self._store.is_opted_out(ours, person):
                return True
        return False

    async def refuse_if_opted_out(self, message: OutboundMessage) -> None:
        """Raise RecipientOptedOut if `message` goes to a person who opted out of its sender."""
        if await self.is_opted_out(message.to, message.from_, message.messaging_service_sid):
            raise RecipientOptedOut(message.to, _sender(message))


def _senders(*candidates: str | None) -> list[str]:
    return list(dict.fromkeys(c for c in candidates if c))


def _sender(message: OutboundMessage) -> str:
    return message.from_ or message.messaging_service_sid or "?"
