"""A text found through List Messages → the same `InboundMessage` the webhook builds.

Inbound catch-up (`adapter.delivery.catchup`) finds texts whose webhook never reached
us; it hands them to the same store path as the webhook, so they must look the same to
a bot. What a Message resource lacks, compared with the webhook form, stays empty: the
From/To places (Twilio only geolocates for the webhook) and the media URLs (a
subresource; `num_media` still says how many there were).
"""

from __future__ import annotations

from datetime import UTC, datetime

from adapter.twilio.messages import InboundMessage
from adapter.twilio.opt_out import keyword_type
from adapter.twilio.resources import MessageResource

INBOUND_DIRECTION = "inbound"


def received_at(resource: MessageResource) -> datetime | None:
    """When Twilio received the text: its date_sent (whole seconds), else date_created."""
    return resource.date_sent or resource.date_created


def inbound_from_resource(resource: MessageResource, *, late: bool = False) -> InboundMessage:
    """The `InboundMessage` for an inbound Message; ValueError for any other message."""
    if resource.direction != INBOUND_DIRECTION:
        raise ValueError(f"message {resource.sid} is {resource.direction or 'of no direction'}")
    if not resource.from_ or not resource.to:
        raise ValueError(f"message {resource.sid} has no From or To")
    opt_out = keyword_type(resource.body)
    return InboundMessage(
        message_sid=resource.sid,
        account_sid=resource.account_sid,
        from_=resource.from_,
        to=resource.to,
        body=resource.body,
        messaging_service_sid=resource.messaging_service_sid,
        num_media=resource.num_media,
        num_segments=resource.num_segments or 1,
        opt_out_type=str(opt_out) if opt_out is not None else None,
        # Twilio's Message JSON, its plain fields as text (as the webhook form gives them).
        raw={
            name: str(value)
            for name, value in resource.raw.items()
            if isinstance(value, str | int | float) and not isinstance(value, bool)
        },
        received_at=received_at(resource) or datetime.now(UTC),
        caught_up=True,
        late=late,
    )
