"""What an emulated Twilio account looks like: its credentials, numbers and manners."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapter.twilio.emulator.addresses import is_e164
from adapter.twilio.emulator.faults import Faults

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

    def owns(self, number: str) -> bool:
        return number in self.numbers
