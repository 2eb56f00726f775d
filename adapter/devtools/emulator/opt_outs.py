"""Opt-out as Twilio models it on SMS: after a person texts STOP to one of the account's
numbers, a send from that number (or any number of its Messaging Service) to them is
refused with error 21610, until they text START.

Twilio also answers STOP, START and HELP itself, with its default texts below: the
emulator lists those answers as messages from our number to the person (direction
"outbound-reply", as Twilio's logs show them), right after the keyword's text.

Like Twilio, only SMS is covered: Twilio leaves opt-out keywords on WhatsApp to the
business. The list is guarded by a lock, as the rest of the emulator's state is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.errors import TwilioApiError
from adapter.twilio.addresses import is_whatsapp, number_of
from adapter.twilio.opt_out import UNSUBSCRIBED_ERROR, OptOutType, keyword_type

UNSUBSCRIBED_MESSAGE = "Attempt to send to unsubscribed recipient"
AUTO_REPLY_DIRECTION = "outbound-reply"
# Twilio's default answers to its opt-out keywords.
AUTO_REPLIES = {
    OptOutType.STOP: (
        "You have successfully been unsubscribed. You will not receive any more messages "
        "from this number. Reply START to resubscribe."
    ),
    OptOutType.START: (
        "You have successfully been re-subscribed to messages from this number. "
        "Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply."
    ),
    OptOutType.HELP: "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}


def auto_reply(person: str, body: str) -> str | None:
    """What Twilio answers by itself to `person`'s text `body`, if anything."""
    if is_whatsapp(person):
        return None
    kind = keyword_type(body)
    return AUTO_REPLIES[kind] if kind is not None else None


class OptOutList:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: set[tuple[str, str]] = set()  # (our number, person)

    def note_inbound(self, ours: str, person: str, body: str) -> None:
        """A person texted `body` to our address `ours`: a STOP or START changes the list."""
        if is_whatsapp(person):
            return
        kind = keyword_type(body)
        pair = (number_of(ours), person)
        with self._lock:
            if kind is OptOutType.STOP:
                self._pairs.add(pair)
            elif kind is OptOutType.START:
                self._pairs.discard(pair)

    def blocks(self, senders: Iterable[str], person: str) -> bool:
        """Whether `person` opted out of any of our numbers `senders` (bare E.164)."""
        with self._lock:
            return any((sender, person) in self._pairs for sender in senders)


def refuse_if_unsubscribed(
    opt_outs: OptOutList,
    config: EmulatorConfig,
    to: str,
    from_: str | None,
    messaging_service_sid: str | None,
) -> None:
    """Raise Twilio's 21610 for a send to a person who opted out of its sender."""
    if from_ is not None:
        senders = config.sender_group(number_of(from_))
    else:
        senders = config.sender_group(config.service_sender(messaging_service_sid))
    if opt_outs.blocks(senders, to):
        raise TwilioApiError(400, UNSUBSCRIBED_ERROR, UNSUBSCRIBED_MESSAGE)
