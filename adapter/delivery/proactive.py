"""Texting a person first (a proactive message), through the same outbox as replies."""

from __future__ import annotations

from adapter.delivery.opt_outs import OptOuts
from adapter.store.base import ReplyDraft, Store
from adapter.twilio.messages import OutboundMessage


async def enqueue_text(store: Store, opt_outs: OptOuts, message: OutboundMessage) -> int:
    """Queue `message`; its outbox id. Ordering is kept with the conversation's replies.

    Raises `adapter.bot.context.RecipientOptedOut` if the person texted STOP to that sender.
    """
    await opt_outs.refuse_if_opted_out(message)
    [outbox_id] = await store.enqueue_outbound(
        [ReplyDraft(conversation=str(message.conversation), payload=message.to_json())]
    )
    return outbox_id
