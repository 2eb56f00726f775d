"""Scheduled messages: Twilio holds them (status "scheduled") until their SendAt, and an
operator may cancel them until then."""

from __future__ import annotations

from adapter.delivery.statuses import StatusRecorder
from adapter.ratelimit import Limiter
from adapter.store.base import OutboundRecord, Store
from adapter.twilio.client import TwilioClient


class NotScheduled(ValueError):
    """A cancel was asked for a message that is not scheduled at Twilio."""


async def cancel_scheduled(
    outbox_id: int,
    *,
    store: Store,
    client: TwilioClient,
    limiter: Limiter,
    statuses: StatusRecorder,
) -> OutboundRecord:
    """Cancel outbox row `outbox_id`'s scheduled message (Update Message, Status=canceled).
    The store and the bot's status handlers hear "canceled" like any other status.

    Raises LookupError for an unknown row, `NotScheduled` if it is not a scheduled
    message at Twilio, and `adapter.twilio.errors.TwilioError` if Twilio refuses (the
    message was sent meanwhile).
    """
    record = await store.get_outbound(outbox_id)
    if record is None:
        raise LookupError(outbox_id)
    if record.twilio_status != "scheduled" or record.message_sid is None:
        shown = record.twilio_status or record.state
        hint = " (it is still in the outbox; try again in a moment)" if shown == "pending" else ""
        raise NotScheduled(
            f"message {outbox_id} is {shown}, not scheduled at Twilio: only a scheduled "
            f"message can be canceled{hint}"
        )
    async with limiter.slot(None):
        resource = await client.cancel_message(record.message_sid)
    await statuses.apply(resource.sid, resource.status, resource.error_code)
    updated = await store.get_outbound(outbox_id)
    assert updated is not None
    return updated
