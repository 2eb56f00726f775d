"""What the channel reports as it works, for metrics and the dev console.

The default does nothing; `adapter.metrics` (when installed) and tests plug in their own.
"""

from __future__ import annotations

from adapter.twilio.signature import SignatureCheck


class ChannelEvents:
    def inbound(self, result: str) -> None:
        """A messaging webhook ended: accepted, duplicate, bad_signature, rejected, store_unavailable."""

    def signature_rejected(self, path: str, check: SignatureCheck) -> None: ...

    def status_callback(self, status: str) -> None: ...

    def bot_handled(self, bot: str, seconds: float) -> None: ...
