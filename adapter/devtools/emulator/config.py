"""What an emulated Twilio account looks like: its credentials, numbers and manners."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapter.devtools.emulator.faults import Faults
from adapter.twilio.addresses import is_e164, is_service_sid

DEFAULT_NUMBER = "+15005550006"


@dataclass
class EmulatorConfig:
    account_sid: str
    # Secrets stay out of repr so a logged config never leaks them.
    auth_token: str = field(repr=False)
    # Where simulated inbound texts are POSTed (the adapter's /api/sms); None: nowhere.
    webhook_url: str | None = None
    # Our numbers; the first is the default `To` of simulated texts and the sender a
    # Messaging Service picks.
    numbers: list[str] = field(default_factory=lambda: [DEFAULT_NUMBER])
    latency_ms: int = 0
    faults: Faults = field(default_factory=Faults)
    # API key SID -> secret, also accepted for Basic auth.
    api_keys: dict[str, str] = field(default_factory=dict, repr=False)
    # Pause between the queued -> sent -> delivered status callbacks.
    callback_delay_ms: int = 0
    # When set, webhooks and callbacks are signed the newer way: HMAC-SHA256 with this
    # shared key, announced by X-Twilio-Webhooks-Signature-Settings.
    webhook_shared_key: str | None = field(default=None, repr=False)
    # Messaging Service SID -> its numbers (some of `numbers`). Texts to those numbers
    # carry MessagingServiceSid; a send through the service goes from its first number.
    messaging_services: dict[str, list[str]] = field(default_factory=dict)
    # Content templates (HX SID -> text with {{1}}-style placeholders) a send may name in
    # ContentSid; the delivered body is the text with ContentVariables filled in.
    content_templates: dict[str, str] = field(default_factory=dict)
    # TwiML Apps (AP SID -> their message status callback URL) a send may name in
    # ApplicationSid: statuses then go to that URL unless StatusCallback is given.
    applications: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.account_sid.startswith("AC"):
            raise ValueError(f"account_sid {self.account_sid!r} does not start with AC")
        if not self.auth_token:
            raise ValueError("auth_token is empty")
        if not self.numbers:
            raise ValueError("numbers is empty: the emulated account needs a number")
        for number in self.numbers:
            if not is_e164(number):
                raise ValueError(f"number {number!r} is not E.164 (like +15005550006)")
        if self.latency_ms < 0 or self.callback_delay_ms < 0:
            raise ValueError("latency_ms and callback_delay_ms cannot be negative")
        for sid, members in self.messaging_services.items():
            if not is_service_sid(sid):
                raise ValueError(f"messaging service {sid!r} is not MG and 32 hex digits")
            strangers = [number for number in members if not self.owns(number)]
            if not members or strangers:
                raise ValueError(
                    f"messaging service {sid} needs numbers from `numbers`; not ours: {strangers}"
                )

    def owns(self, number: str) -> bool:
        return number in self.numbers

    def service_of(self, number: str) -> str | None:
        """The Messaging Service `number` belongs to, if any."""
        for sid, members in self.messaging_services.items():
            if number in members:
                return sid
        return None

    def service_sender(self, service_sid: str | None) -> str:
        """The number a send through `service_sid` goes from: the service's first number,
        or the account's first for a service the emulator was not told about."""
        members = self.messaging_services.get(service_sid or "")
        return members[0] if members else self.numbers[0]

    def sender_group(self, number: str) -> list[str]:
        """`number` and the other numbers of its Messaging Service: Twilio applies a STOP
        texted to one of them to all of them."""
        service = self.service_of(number)
        return list(self.messaging_services[service]) if service else [number]
