"""What the channel reports as it works, for metrics.

The default does nothing; `adapter.metrics.Metrics` (always installed by `build_channel`)
is the one listener in the project. The sender's hooks (`SendObserver`: sent, failed,
retried, adopted) are part of it, so one object hears everything the channel does.
"""

from __future__ import annotations

from adapter.delivery.sender import SendObserver
from adapter.twilio.signature import SignatureCheck


class ChannelEvents(SendObserver):
    def inbound(self, result: str) -> None:
        """A messaging webhook ended: accepted, duplicate, bad_signature, rejected, store_unavailable."""

    def signature_rejected(self, path: str, check: SignatureCheck) -> None: ...

    def status_callback(self, status: str) -> None: ...

    def bot_handled(self, bot: str, seconds: float) -> None: ...
