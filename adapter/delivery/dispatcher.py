"""Inbound texts → bot handlers, one conversation at a time.

The dispatcher claims committed texts from the store, runs the routed bot, and commits
the outcome in one transaction: the text marked done, the bot's replies in the outbox,
the conversation state saved. A bot that raises loses its replies and state changes for
that turn (nothing half-done is sent), is logged with the activity id, and the adapter
keeps serving.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from adapter.bot.context import Context, HistoryProvider, MediaDownload, RetryLater, jsonable_state
from adapter.delivery.events import NO_EVENTS, ChannelEvents
from adapter.delivery.opt_outs import OptOuts, reaches_bots
from adapter.delivery.routes import RouteTable
from adapter.delivery.worker import ClaimLoop, ClaimLoopWorker
from adapter.logs import message_fields
from adapter.long_messages import LongMessages
from adapter.store.base import InboundJob, ReplyDraft, Store, StoreError
from adapter.twilio.messages import InboundMessage

logger = logging.getLogger("adapter.dispatcher")

LEASE_SECONDS = 300.0
# A turn whose commit failed is handed back to run again after this long, and the hand-back
# itself (the store may still be failing) is tried again with these pauses, growing.
RETRY_AFTER_STORE_ERROR = 1.0
HAND_BACK_PAUSES = (0.2, 0.5, 1.0, 2.0, 5.0)


class Dispatcher(ClaimLoopWorker[InboundJob]):
    def __init__(
        self,
        store: Store,
        routes: RouteTable,
        *,
        concurrency: int,
        on_replies_committed: Callable[[], None],
        opt_outs: OptOuts,
        poll_interval: float = 1.0,
        events: ChannelEvents = NO_EVENTS,
        history: Callable[[InboundMessage], HistoryProvider] | None = None,
        long_messages: LongMessages = LongMessages.SPLIT,
        opt_out_to_bots: bool = False,
        media_download: MediaDownload | None = None,
    ) -> None:
        self._store = store
        # SMS in the real world: opt-out keywords, long replies, ctx.download().
        self._opt_outs = opt_outs
        self._opt_out_to_bots = opt_out_to_bots
        self._long_messages = long_messages
        self._media_download = media_download
        self._routes = routes
        self._history = history  # ctx.history() for the text being handled
        self._on_replies_committed = on_replies_committed
        self._events = events
        self._loop: ClaimLoop[InboundJob] = ClaimLoop(
            "dispatcher",
            claim=lambda n: store.claim_inbound(n, LEASE_SECONDS),
            handle=self._handle_or_hand_back,
            release=lambda job: store.release_inbound(job.id),
            concurrency=concurrency,
            poll_interval=poll_interval,
        )

    async def _handle_or_hand_back(self, job: InboundJob) -> None:
        try:
            await self.handle(job)
        except StoreError as error:
            await self._hand_back(job, error)

    async def _hand_back(self, job: InboundJob, error: StoreError) -> None:
        """The store failed mid-turn (most often the commit of its outcome): nothing of
        the turn was kept, so the text must run again. Waiting out the claim's lease
        would hold an acknowledged text (and the rest of its conversation) for minutes;
        releasing it makes it due again in a second, once the store takes writes."""
        fields = message_fields(conversation=job.conversation)
        logger.warning(
            "text %s: the store failed during its turn (%s); it will run again",
            job.message_id,
            error,
            extra=fields,
        )
        loop = asyncio.get_running_loop()
        gives_up_at = loop.time() + LEASE_SECONDS  # by then the lease has lapsed anyway
        for attempt in itertools.count():
            not_before = datetime.now(UTC) + timedelta(seconds=RETRY_AFTER_STORE_ERROR)
            try:
                await self._store.release_inbound(job.id, not_before=not_before)
                return
            except StoreError:
                pause = HAND_BACK_PAUSES[min(attempt, len(HAND_BACK_PAUSES) - 1)]
                if loop.time() + pause > gives_up_at:
                    return
                await asyncio.sleep(pause)

    async def handle(self, job: InboundJob) -> None:
        message = InboundMessage.from_json(job.payload)
        if not await self._reaches_bots(job, message):
            return
        route = self._routes.resolve(message.to, message.messaging_service_sid)
        fields = message_fields(message.message_sid, job.conversation)
        if route is None:
            logger.warning(
                "no bot route for %s: text %s recorded but not handled",
                message.to,
                message.message_sid,
                extra=fields,
            )
            await self._store.finish_inbound(job.id, [], error=f"no bot route for {message.to}")
            return

        state = await self._store.load_state(job.conversation)
        reply_from, reply_service = route.reply_sender(message.to)
        ctx = Context(
            message=message,
            state=state,
            reply_from=reply_from,
            reply_messaging_service_sid=reply_service,
            bot_name=route.bot_name,
            history_provider=self._history(message) if self._history is not None else None,
            opted_out=await self._opt_outs.is_opted_out(
                message.from_, message.to, message.messaging_service_sid, reply_from, reply_service
            ),
            long_messages=self._long_messages,
            media_download=self._media_download,
        )
        activity = ctx.activity
        started = time.perf_counter()
        try:
            matched = await route.router.dispatch(ctx)
            saved_state = jsonable_state(ctx.state)
        except RetryLater as later:
            logger.warning(
                "bot %s will handle activity %s again in %.1fs: %s",
                route.bot_name,
                activity.id,
                later.delay,
                later,
                extra=fields | {"bot": route.bot_name},
            )
            not_before = datetime.now(UTC) + timedelta(seconds=later.delay)
            await self._store.release_inbound(job.id, not_before=not_before)
            return
        except Exception as error:
            logger.exception(
                "bot %s raised on activity %s (conversation %s); its replies for this text are dropped",
                route.bot_name,
                activity.id,
                job.conversation,
                extra=fields | {"bot": route.bot_name},
            )
            await self._store.finish_inbound(job.id, [], error=f"{type(error).__name__}: {error}")
            return
        finally:
            self._events.bot_handled(route.bot_name, time.perf_counter() - started)

        if not matched:
            logger.info(
                "bot %s had no handler for activity %s",
                route.bot_name,
                activity.id,
                extra=fields | {"bot": route.bot_name},
            )
        drafts = [
            ReplyDraft(conversation=job.conversation, payload=r.to_json()) for r in ctx.replies
        ]
        await self._store.finish_inbound(job.id, drafts, state=(job.conversation, saved_state))
        if drafts:
            self._on_replies_committed()

    async def _reaches_bots(self, job: InboundJob, message: InboundMessage) -> bool:
        """Record a STOP or START; False (the text is done) when it stops here."""
        kind = await self._opt_outs.note_inbound(message)
        if reaches_bots(kind, self._opt_out_to_bots):
            return True
        logger.info(
            "text %s is the opt-out keyword %s: recorded, not passed to bots "
            "(SMS_ADAPTER_OPT_OUT_TO_BOTS is off)",
            message.message_sid,
            kind,
            extra=message_fields(message.message_sid, job.conversation),
        )
        await self._store.finish_inbound(job.id, [])
        return False
