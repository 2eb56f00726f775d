"""What the channel reports as it works: one listener object that every worker takes.

`ChannelEvents` does nothing; it is both the interface and the default. The one real
listener is `adapter.runtime.metrics.Metrics`, installed by the composition root
(`adapter.runtime.channel.build_channel`), so one object hears everything the channel
does: webhooks, bot turns, sends, status callbacks.
"""

from __future__ import annotations

from adapter.store.base import OutboundJob
from adapter.twilio.errors import TwilioError
from adapter.twilio.signature import SignatureCheck


class ChannelEvents:
    # --- webhooks -------------------------------------------------------------
    def inbound(self, result: str) -> None:
        """A messaging webhook ended: accepted, duplicate, bad_signature, rejected,
        store_unavailable; or inbound catch-up stored a text: caught_up, too_old."""

    def signature_rejected(self, path: str, check: SignatureCheck) -> None: ...

    def status_callback(self, status: str) -> None: ...

    # --- bots -----------------------------------------------------------------
    def bot_handled(self, bot: str, seconds: float) -> None: ...

    def bot_had_no_handler(self, bot: str) -> None:
        """No handler of the bot matched a text."""

    def bot_error(self, bot: str, kind: str, error: BaseException, *, answered: bool) -> None:
        """A bot's handler raised or timed out (`kind`: the exception's class name, or
        "timeout"); also a status handler or an error handler that raised. `answered`:
        the person got an answer all the same (the bot's error handler, or the apology)."""

    # --- sends ----------------------------------------------------------------
    def sent(self, job: OutboundJob, seconds: float) -> None: ...
    def failed(self, job: OutboundJob, code: int | None, dead: bool) -> None: ...
    def retried(self, job: OutboundJob, error: TwilioError) -> None: ...
    def adopted(self, job: OutboundJob) -> None: ...

    # --- storage --------------------------------------------------------------
    def retention_deleted(self, rows: int) -> None:
        """Retention deleted `rows` rows older than SMS_ADAPTER_RETENTION."""


NO_EVENTS = ChannelEvents()
