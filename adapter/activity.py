"""The Bot Framework-shaped activity a bot receives for each text.

The ids follow Microsoft's hosted SMS channel, so a Bot Framework bot sees what it
saw there: id = MessageSid, from.id = the sender's number, recipient.id = our number,
conversation.id = the sender's number, channelId "sms", channelData = Twilio's form.
(A Bot Framework bot is posted it with conversation.id "<our number>|<sender>" instead:
see botframework/records.py.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adapter.twilio.messages import InboundMessage

CHANNEL_ID = "sms"


@dataclass(frozen=True)
class ChannelAccount:
    id: str
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            data["name"] = self.name
        return data


@dataclass(frozen=True)
class Attachment:
    content_type: str
    content_url: str

    def to_json(self) -> dict[str, Any]:
        return {"contentType": self.content_type, "contentUrl": self.content_url}


@dataclass(frozen=True)
class Activity:
    id: str
    timestamp: datetime
    from_: ChannelAccount
    recipient: ChannelAccount
    conversation_id: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    channel_data: dict[str, str] = field(default_factory=dict)
    type: str = "message"
    channel_id: str = CHANNEL_ID
    service_url: str | None = None

    @classmethod
    def from_inbound(cls, message: InboundMessage) -> Activity:
        return cls(
            id=message.message_sid,
            timestamp=message.received_at,
            from_=ChannelAccount(id=message.from_, name=message.profile_name),
            recipient=ChannelAccount(id=message.to),
            conversation_id=message.from_,
            text=message.body,
            attachments=tuple(
                Attachment(content_type=m.content_type, content_url=m.url) for m in message.media
            ),
            channel_data=dict(message.raw),
        )

    def to_json(self) -> dict[str, Any]:
        """The Bot Framework's camelCase JSON, as a Bot Framework bot receives it."""
        data: dict[str, Any] = {
            "type": self.type,
            "id": self.id,
            # Bot Framework timestamps are ISO 8601 in UTC with a trailing Z.
            "timestamp": self.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "channelId": self.channel_id,
            "from": self.from_.to_json(),
            "recipient": self.recipient.to_json(),
            "conversation": {"id": self.conversation_id},
            "text": self.text,
            "attachments": [a.to_json() for a in self.attachments],
            "channelData": dict(self.channel_data),
        }
        if self.service_url is not None:
            data["serviceUrl"] = self.service_url
        return data
