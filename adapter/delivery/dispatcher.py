"""Inbound texts → bot handlers, one conversation at a time.

The dispatcher claims committed texts from the store, runs the routed bot, and commits
the outcome in one transaction: the text marked done, the bot's replies in the outbox,
the conversation state saved. A bot that raises or runs past its time limit loses its
replies and state changes for that turn (nothing half-done is sent), is logged with the
activity id and counted, and the adapter keeps serving; the bot's error handler (or the
configured apology) answers instead (see `adapter.bot.turn`). While a handler runs, the
text's lease is renewed, so a slow handler's text is never claimed a second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapter.bot.context import (
    Context,
    HandlerTimeout,
    HistoryProvider,
    MediaDownload,
    RetryLater,
    jsonable_state,
)
from adapter.bot.turn import TurnOutcome, error_kind, run_turn
from adapter.delivery.events import NO_EVENTS, ChannelEvents
from adapter.delivery.opt_outs import OptOuts, reaches_bots
from adapter.delivery.routes import RouteTable
from adapter.delivery.worker import ClaimLoop, ClaimLoopWorker
from adapter.logs import message_fields
from adapter.long_messages import LongMessages
from adapter.store.base import InboundJob, ReplyDraft, Store, StoreError
from adapter.twilio.messages import InboundMessage, OutboundMessage

logger = logging.getLogger("adapter.dispatcher")

LEASE_SECONDS = 300.0
# What the store records for a text found older than SMS_ADAPTER_CATCHUP_MAX_AGE.
TOO_OLD = "not handled: older than SMS_ADAPTER_CATCHUP_MAX_AGE when found by catch-up"
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
        handler_timeout: float | None = None,
        error_reply: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self._store = store
        self._timeout = handler_timeout  # None: no time limit
        self._error_reply = error_reply
        self._lease = lease_seconds
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
            claim=lambda n: store.claim_inbound(n, self._lease),
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
        if message.late and not route.router.late_texts:
            # Catch-up counted and logged it when it found it; an answer now would come
            # hours late. A STOP in it was recorded above all the same.
            logger.info(
                "text %s is too old to answer (received %s): recorded, not given to bot %s",
                message.message_sid,
                message.received_at.isoformat(),
                route.bot_name,
                extra=fields | {"bot": route.bot_name},
            )
            await self._store.finish_inbound(job.id, [], error=TOO_OLD)
            return

        saved = await self._store.load_state(job.conversation)
        reply_from, reply_service = route.reply_sender(message.to)
        opted_out = await self._opt_outs.is_opted_out(
            message.from_, message.to, message.messaging_service_sid, reply_from, reply_service
        )
        history = self._history(message) if self._history is not None else None

        def make_context() -> Context:
            # A fresh one for the handler and another for an error handler: each starts
            # from the state as saved, so a failed handler's changes are gone.
            return Context(
                message=message,
                state=jsonable_state(saved),
                reply_from=reply_from,
                reply_messaging_service_sid=reply_service,
                bot_name=route.bot_name,
                history_provider=history,
                opted_out=opted_out,
                long_messages=self._long_messages,
                media_download=self._media_download,
                send_defaults=route.send_defaults,
            )

        fields |= {"bot": route.bot_name}
        started = time.perf_counter()
        try:
            async with self._lease_kept(job, fields):
                outcome = await run_turn(route.router, make_context, timeout=self._timeout)
        except RetryLater as later:
            logger.warning(
                "bot %s will handle activity %s again in %.1fs: %s",
                route.bot_name,
                message.message_sid,
                later.delay,
                later,
                extra=fields,
            )
            not_before = datetime.now(UTC) + timedelta(seconds=later.delay)
            await self._store.release_inbound(job.id, not_before=not_before)
            return
        finally:
            self._events.bot_handled(route.bot_name, time.perf_counter() - started)

        if not outcome.matched:
            self._events.bot_had_no_handler(route.bot_name)
            logger.info(
                "bot %s had no handler for activity %s",
                route.bot_name,
                message.message_sid,
                extra=fields,
            )
        error = None
        replies = outcome.ctx.replies if outcome.replies_sent else []
        if outcome.error is not None:
            error = f"{type(outcome.error).__name__}: {outcome.error}"
            if not outcome.replies_sent:
                replies = self._apology(outcome.ctx)
            answered = outcome.replies_sent or bool(replies)
            self._report_error(route.bot_name, job.conversation, outcome, answered, fields)
        drafts = [ReplyDraft(conversation=job.conversation, payload=r.to_json()) for r in replies]
        state = None if outcome.state is None else (job.conversation, outcome.state)
        await self._store.finish_inbound(job.id, drafts, state=state, error=error)
        if drafts:
            self._on_replies_committed()

    def _report_error(
        self,
        bot: str,
        conversation: str,
        outcome: TurnOutcome,
        answered: bool,
        fields: dict[str, Any],
    ) -> None:
        error = outcome.error
        assert error is not None
        activity = outcome.ctx.message.message_sid
        if outcome.opted_out:
            # Expected, not a bug: the person texted STOP and the bot replied anyway.
            logger.info(
                "bot %s: its reply to activity %s was refused: %s",
                bot,
                activity,
                error,
                extra=fields,
            )
            return
        self._events.bot_error(bot, error_kind(error), error, answered=answered)
        if outcome.handled_by is not None:
            dropped = "its error handler answers instead"
        elif answered:
            dropped = "SMS_ADAPTER_BOT_ERROR_REPLY answers instead"
        else:
            dropped = "its replies for this text are dropped"
        if isinstance(error, HandlerTimeout):
            logger.error(
                "bot %s: %s on activity %s (conversation %s); %s",
                bot,
                error,
                activity,
                conversation,
                dropped,
                extra=fields,
            )
        else:
            logger.error(
                "bot %s raised on activity %s (conversation %s); %s",
                bot,
                activity,
                conversation,
                dropped,
                exc_info=error,
                extra=fields,
            )
        failure = outcome.error_handler_error
        if failure is not None:
            self._events.bot_error(bot, error_kind(failure), failure, answered=answered)
            logger.error(
                "the error handler of bot %s raised too on activity %s; it sends nothing",
                bot,
                activity,
                exc_info=failure,
                extra=fields,
            )

    def _apology(self, ctx: Context) -> list[OutboundMessage]:
        """SMS_ADAPTER_BOT_ERROR_REPLY, for a bot with no error handler that answered."""
        if self._error_reply is None or ctx.opted_out:
            return []
        ctx.reply(self._error_reply)
        return ctx.replies

    @contextlib.asynccontextmanager
    async def _lease_kept(self, job: InboundJob, fields: dict[str, Any]) -> AsyncIterator[None]:
        """Renew the text's lease while its handler runs, so neither this process nor
        another replica claims it again however long the handler takes."""
        # Most turns end in milliseconds: a timer is armed, and the renewing task is
        # only started for a turn that outlives a third of the lease.
        renewer: asyncio.Task[None] | None = None

        def start_renewing() -> None:
            nonlocal renewer
            renewer = asyncio.create_task(self._renew(job, fields), name=f"renew-{job.id}")

        timer = asyncio.get_running_loop().call_later(self._lease / 3, start_renewing)
        try:
            yield
        finally:
            timer.cancel()
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer

    async def _renew(self, job: InboundJob, fields: dict[str, Any]) -> None:
        while True:
            try:
                if not await self._store.renew_inbound(job.id, self._lease):
                    logger.warning(
                        "the claim on text %s was lost while its bot ran: another worker "
                        "may handle it too",
                        job.message_id,
                        extra=fields,
                    )
                    return
            except Exception:
                # The store is down for a moment: try again before the lease runs out.
                logger.exception("could not renew the claim on text %s", job.message_id)
            await asyncio.sleep(self._lease / 3)

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
