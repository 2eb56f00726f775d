"""What the channel reports as it works, for metrics and the dev console.

The default does nothing; `adapter.metrics` (always installed by `build_channel`) and
tests plug in their own. The sender's hooks (`SendObserver`: sent, failed, retried,
adopted) are part of it, so one object hears everything the channel does.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter.delivery.sender import SendObserver
from adapter.store.base import OutboundJob
from adapter.twilio.errors import TwilioError
from adapter.twilio.signature import SignatureCheck


class ChannelEvents(SendObserver):
    def inbound(self, result: str) -> None:
        """A messaging webhook ended: accepted, duplicate, bad_signature, rejected, store_unavailable."""

    def signature_rejected(self, path: str, check: SignatureCheck) -> None: ...

    def status_callback(self, status: str) -> None: ...

    def bot_handled(self, bot: str, seconds: float) -> None: ...


class EventFanOut(ChannelEvents):
    """Several listeners hearing the same events (the metrics, and whatever else a
    caller of `build_channel` passes), in order."""

    def __init__(self, listeners: Sequence[ChannelEvents]) -> None:
        self.listeners = tuple(listeners)

    def inbound(self, result: str) -> None:
        for listener in self.listeners:
            listener.inbound(result)

    def signature_rejected(self, path: str, check: SignatureCheck) -> None:
        for listener in self.listeners:
            listener.signature_rejected(path, check)

    def status_callback(self, status: str) -> None:
        for listener in self.listeners:
            listener.status_callback(status)

    def bot_handled(self, bot: str, seconds: float) -> None:
        for listener in self.listeners:
            listener.bot_handled(bot, seconds)

    def sent(self, job: OutboundJob, seconds: float) -> None:
        for listener in self.listeners:
            listener.sent(job, seconds)

    def failed(self, job: OutboundJob, code: int | None, dead: bool) -> None:
        for listener in self.listeners:
            listener.failed(job, code, dead)

    def retried(self, job: OutboundJob, error: TwilioError) -> None:
        for listener in self.listeners:
            listener.retried(job, error)

    def adopted(self, job: OutboundJob) -> None:
        for listener in self.listeners:
            listener.adopted(job)
