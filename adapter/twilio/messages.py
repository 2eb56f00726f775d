"""The channel's own records of a text: what came in, what goes out.

These types carry no Twilio or HTTP behaviour. `adapter.twilio.webhook_form` builds an
`InboundMessage` from Twilio's form; the store keeps both types as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapter.twilio.send_options import SendOptions


@dataclass(frozen=True)
class Media:
    url: str
    content_type: str


@dataclass(frozen=True)
class Place:
    """The geographic fields Twilio sends for one side (From* or To*)."""

    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None


def _place_json(place: Place) -> dict[str, str | None]:
    return {"city": place.city, "state": place.state, "zip": place.zip, "country": place.country}


@dataclass(frozen=True)
class InboundMessage:
    """One text a person sent to one of our numbers, as Twilio delivered it."""

    message_sid: str
    account_sid: str
    from_: str
    to: str
    body: str
    messaging_service_sid: str | None = None
    num_media: int = 0
    num_segments: int = 1
    media: tuple[Media, ...] = ()
    from_place: Place = field(default_factory=Place)
    to_place: Place = field(default_factory=Place)
    opt_out_type: str | None = None
    profile_name: str | None = None
    wa_id: str | None = None
    # Every parameter Twilio posted, verbatim: Twilio adds parameters without notice.
    raw: dict[str, str] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Found by inbound catch-up (List Messages) rather than delivered by the webhook.
    caught_up: bool = False
    # Found by catch-up older than SMS_ADAPTER_CATCHUP_MAX_AGE: given only to bots that
    # ask for late texts (Router(late_texts=True)), which see it as ctx.late.
    late: bool = False

    @property
    def conversation(self) -> ConversationKey:
        return ConversationKey(ours=self.to, person=self.from_)

    def to_json(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict: this runs for every webhook, and
        # asdict's deep copy was a visible share of the ingest path.
        return {
            "message_sid": self.message_sid,
            "account_sid": self.account_sid,
            "from_": self.from_,
            "to": self.to,
            "body": self.body,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": self.num_media,
            "num_segments": self.num_segments,
            "media": [{"url": m.url, "content_type": m.content_type} for m in self.media],
            "from_place": _place_json(self.from_place),
            "to_place": _place_json(self.to_place),
            "opt_out_type": self.opt_out_type,
            "profile_name": self.profile_name,
            "wa_id": self.wa_id,
            "raw": dict(self.raw),
            "received_at": self.received_at.isoformat(),
            "caught_up": self.caught_up,
            "late": self.late,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InboundMessage:
        return cls(
            message_sid=data["message_sid"],
            account_sid=data["account_sid"],
            from_=data["from_"],
            to=data["to"],
            body=data["body"],
            messaging_service_sid=data.get("messaging_service_sid"),
            num_media=data.get("num_media", 0),
            num_segments=data.get("num_segments", 1),
            media=tuple(Media(**m) for m in data.get("media", ())),
            from_place=Place(**data.get("from_place", {})),
            to_place=Place(**data.get("to_place", {})),
            opt_out_type=data.get("opt_out_type"),
            profile_name=data.get("profile_name"),
            wa_id=data.get("wa_id"),
            raw=dict(data.get("raw", {})),
            received_at=datetime.fromisoformat(data["received_at"]),
            caught_up=data.get("caught_up", False),
            late=data.get("late", False),
        )


@dataclass(frozen=True)
class ConversationKey:
    """A conversation is one of our addresses and one person's address."""

    ours: str
    person: str

    def __str__(self) -> str:
        # "|" never occurs in E.164 numbers, `whatsapp:` addresses or service SIDs.
        return f"{self.ours}|{self.person}"

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        ours, _, person = text.partition("|")
        return cls(ours=ours, person=person)


@dataclass(frozen=True)
class OutboundMessage:
    """A text we will send: the request to Twilio's Send Message, before it is made.

    Exactly one of `from_` and `messaging_service_sid` is set.
    """

    to: str
    body: str
    from_: str | None = None
    messaging_service_sid: str | None = None
    media_urls: tuple[str, ...] = ()
    # Send Message's other options (validity, scheduling, templates...), kept with the
    # message in the outbox so a retry after a crash sends it the same way.
    options: SendOptions = field(default_factory=SendOptions)

    def __post_init__(self) -> None:
        if (self.from_ is None) == (self.messaging_service_sid is None):
            raise ValueError(
                "an outbound message needs exactly one of from_ or messaging_service_sid"
            )

    @property
    def conversation(self) -> ConversationKey:
        ours = self.from_ if self.from_ is not None else self.messaging_service_sid
        assert ours is not None
        return ConversationKey(ours=ours, person=self.to)

    def to_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "body": self.body,
            "from_": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "media_urls": list(self.media_urls),
            **({"options": self.options.to_json()} if not self.options.empty else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutboundMessage:
        return cls(
            to=data["to"],
            body=data["body"],
            from_=data.get("from_"),
            messaging_service_sid=data.get("messaging_service_sid"),
            media_urls=tuple(data.get("media_urls", ())),
            options=SendOptions.from_json(data.get("options")),
        )
