"""Delivery statuses → the store (forward-only) → the bots' status handlers.

Twilio's status callbacks and the refresher's Get Message calls both end here. A status
for a SID the sender has not recorded yet (the callback raced Send Message's answer) is
held and tried again shortly by `EarlyStatuses`.
"""

from __future__ import annotations

import logging

from adapter.bot.router import StatusUpdate
from adapter.bot.turn import error_kind
from adapter.delivery.early_statuses import EarlyStatuses
from adapter.delivery.events import NO_EVENTS, ChannelEvents
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.routes import RouteTable
from adapter.logs import message_fields
from adapter.store.base import Store
from adapter.twilio.messages import OutboundMessage
from adapter.twilio.opt_out import UNSUBSCRIBED_ERROR

logger = logging.getLogger("adapter.status")


class StatusRecorder:
    def __init__(
        self,
        store: Store,
        routes: RouteTable,
        opt_outs: OptOuts,
        *,
        events: ChannelEvents = NO_EVENTS,
    ) -> None:
        self._store = store
        self._routes = routes
        self._opt_outs = opt_outs
        self._events = events
        self._early = EarlyStatuses(self.apply)

    async def record(self, message_sid: str, status: str, error_code: int | None) -> None:
        """A status Twilio reported; held for a retry if its SID is not known yet."""
        self._events.status_callback(status)
        if not await self.apply(message_sid, status, error_code):
            self._early.hold(message_sid, status, error_code)

    async def apply(self, message_sid: str, status: str, error_code: int | None) -> bool:
        """Record a status and tell the bot; False when the SID is not (yet) known."""
        change = await self._store.update_status(message_sid, status, error_code)
        if change is None:
            return False
        record = change.record
        message = OutboundMessage.from_json(record.payload)
        if error_code == UNSUBSCRIBED_ERROR:
            await self._opt_outs.note_unsubscribed(message, f"error {error_code} on {message_sid}")
        if not change.changed:
            # A replayed or repeated callback, or a late one that would move backwards:
            # the bot has already heard of this status (or a later one).
            return True
        route = self._routes.resolve(message.from_ or "", message.messaging_service_sid)
        if route is None:
            return True
        update = StatusUpdate(
            message_sid=message_sid,
            status=status,
            error_code=error_code,
            to=message.to,
            from_=message.from_,
            body=message.body,
            conversation=record.conversation,
        )
        try:
            await route.router.dispatch_status(update)
        except Exception as error:
            self._events.bot_error(route.bot_name, error_kind(error), error, answered=False)
            logger.exception(
                "status handler of bot %s raised for %s",
                route.bot_name,
                message_sid,
                extra=message_fields(message_sid, record.conversation, bot=route.bot_name),
            )
        return True

    async def unsent(self, conversation: str, message: OutboundMessage, reason: str) -> None:
        """Tell the bot that one of its replies was given up before it reached Twilio
        (status "failed", no SID): its validity period passed while it waited."""
        route = self._routes.resolve(message.from_ or "", message.messaging_service_sid)
        if route is None:
            return
        update = StatusUpdate(
            message_sid=None,
            status="failed",
            error_code=None,
            to=message.to,
            from_=message.from_,
            body=message.body,
            conversation=conversation,
            reason=reason,
        )
        try:
            await route.router.dispatch_status(update)
        except Exception:
            logger.exception(
                "status handler of bot %s raised for an unsent reply",
                route.bot_name,
                extra=message_fields(conversation=conversation, bot=route.bot_name),
            )

    async def aclose(self) -> None:
        await self._early.aclose()
