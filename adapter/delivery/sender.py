"""Outbox → Twilio's Send Message, exactly once.

Each attempt is recorded in the store before the request is made. If the outcome is
unknown (a timeout, a dropped connection, a crash mid-request), Twilio may already have
created the message and its create call has no idempotency key, so before sending again
the sender looks for the message at Twilio (List Messages) and adopts it if found.

In a fleet, that look is only sound if the replica that made the attempt can no longer
be sending it. So a send runs only inside the store's fence (`claims_safe_until`): none
starts with less than MIN_SEND_WINDOW left of it, and one still in flight when the fence
passes (the replica lost the database and cannot renew it) is cancelled. The fence moves
on while the heartbeat is renewed, so a healthy replica's slow send is never cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from adapter.delivery.events import NO_EVENTS, ChannelEvents
from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.retry import GiveUp, RetryPolicy
from adapter.delivery.worker import ClaimLoop, ClaimLoopWorker
from adapter.logs import message_fields
from adapter.ratelimit import Limiter
from adapter.store.base import OutboundJob, Store, StoreError
from adapter.twilio.client import TwilioClient
from adapter.twilio.errors import (
    TwilioApiError,
    TwilioError,
    TwilioTransportError,
)
from adapter.twilio.messages import OutboundMessage
from adapter.twilio.opt_out import UNSUBSCRIBED_ERROR
from adapter.twilio.resources import MessageResource

logger = logging.getLogger("adapter.sender")

LEASE_SECONDS = 120.0
# Twilio's clock and ours differ a little: a message Twilio created up to this long
# before our attempt started still counts as created by it.
CLOCK_SKEW = timedelta(seconds=2)
# How far back (newest first) reconciliation looks for an in-doubt message.
RECONCILE_SCAN_LIMIT = 200
# A send does not start with less than this left before the fence; how often an in-flight
# send looks whether the fence has moved on.
MIN_SEND_WINDOW = 1.0
FENCE_CHECK_INTERVAL = 0.1


class FencePassed(Exception):
    """This replica's claims may be taken over: it must not (go on) send(ing)."""


# (conversation, message, reason): a reply given up before it reached Twilio, for its
# bot's status handlers.
UnsentListener = Callable[[str, OutboundMessage, str], Awaitable[None]]


class Sender(ClaimLoopWorker[OutboundJob]):
    def __init__(
        self,
        store: Store,
        client: TwilioClient,
        limiter: Limiter,
        policy: RetryPolicy,
        *,
        status_callback_url: str | None,
        application_sid: str | None = None,
        concurrency: int,
        opt_outs: OptOuts,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        events: ChannelEvents = NO_EVENTS,
        rng: random.Random | None = None,
        on_unsent: UnsentListener | None = None,
    ) -> None:
        self._store = store
        self._client = client
        self._limiter = limiter
        self._policy = policy
        self._status_callback_url = status_callback_url
        # Statuses go to this TwiML App's callback URL instead (SMS_ADAPTER_STATUS_VIA_APPLICATION).
        self._application_sid = application_sid
        self._on_unsent = on_unsent
        self._warned_max_price = False
        self._clock = clock
        self._events = events
        self._rng = rng or random.Random()
        self._opt_outs = opt_outs
        self._loop: ClaimLoop[OutboundJob] = ClaimLoop(
            "sender",
            claim=lambda n: store.claim_outbound(n, LEASE_SECONDS, self._clock()),
            handle=self.deliver,
            release=lambda job: store.release_outbound(job.id),
            concurrency=concurrency,
            poll_interval=poll_interval,
        )

    async def deliver(self, job: OutboundJob) -> None:
        message = OutboundMessage.from_json(job.payload)
        if job.in_doubt_since is not None:
            try:
                found = await self._find_at_twilio(message, job.in_doubt_since)
            except TwilioError as error:
                await self._after_error(job, error, in_doubt=True)
                return
            if found is not None:
                logger.info(
                    "outbox %s: an earlier attempt did reach Twilio as %s; not sending again",
                    job.id,
                    found.sid,
                    extra=message_fields(found.sid, job.conversation, outbox_id=job.id),
                )
                await self._store.mark_sent(job.id, found.sid, found.status)
                self._events.adopted(job)
                return

        now = self._clock()
        if self._policy.too_old(created_at=job.created_at, now=now):
            await self._give_up(
                job, None, f"older than {self._policy.max_age} before it could be sent", dead=True
            )
            return
        # Queued before the person texted STOP: Twilio would refuse it with 21610 anyway.
        if await self._opt_outs.is_opted_out(
            message.to, message.from_, message.messaging_service_sid
        ):
            reason = "not sent: the recipient opted out of texts from this sender (STOP)"
            await self._give_up(job, UNSUBSCRIBED_ERROR, reason, dead=False)
            return
        remaining_validity = None
        validity = message.options.validity_period
        if validity is not None:
            # The bot gave the reply `validity` seconds from when it was made; Twilio gets
            # what is left, so time spent in our outbox (an outage, retries) counts too.
            waited = (now - job.created_at).total_seconds()
            remaining_validity = int(validity - waited)
            if remaining_validity < 1:
                reason = (
                    f"not sent: its validity period of {validity} s passed before it could "
                    f"be sent (it waited {waited:.0f} s)"
                )
                await self._give_up(job, None, reason, dead=True)
                if self._on_unsent is not None:
                    await self._on_unsent(job.conversation, message, reason)
                return
        if message.options.max_price is not None and not self._warned_max_price:
            self._warned_max_price = True
            logger.warning(
                "outbox %s carries MaxPrice, which Twilio ignores since 2024-06-03 "
                "(passed on for parity with the connector's Send Message action)",
                job.id,
                extra=message_fields(conversation=job.conversation, outbox_id=job.id),
            )

        if not self._inside_fence(MIN_SEND_WINDOW):
            await self._step_back(job)
            return
        await self._store.mark_attempt_started(job.id, now)
        started = self._clock()
        try:
            async with self._fenced():
                async with self._limiter.slot(message.from_ or message.messaging_service_sid):
                    resource = await self._client.send_message(
                        to=message.to,
                        body=message.body,
                        from_=message.from_,
                        messaging_service_sid=message.messaging_service_sid,
                        media_urls=message.media_urls,
                        status_callback=self._status_callback_url,
                        application_sid=self._application_sid,
                        options=message.options,
                        remaining_validity=remaining_validity,
                    )
        except FencePassed:
            # Cancelled mid-request: Twilio may have the message. The attempt is on record
            # (in doubt), so whoever sends this next looks for it at Twilio first.
            logger.warning(
                "outbox %s: send cancelled: this replica lost the database and its claim "
                "may be taken over; the next attempt checks Twilio first",
                job.id,
                extra=message_fields(conversation=job.conversation, outbox_id=job.id),
            )
            return
        except TwilioError as error:
            ambiguous = isinstance(error, TwilioTransportError) and error.ambiguous
            await self._after_error(job, error, in_doubt=ambiguous)
            return
        await self._store.mark_sent(job.id, resource.sid, resource.status)
        self._events.sent(job, (self._clock() - started).total_seconds())
        logger.info(
            "outbox %s %s as %s",
            job.id,
            "scheduled" if resource.status == "scheduled" else "sent",
            resource.sid,
            extra=message_fields(resource.sid, job.conversation, outbox_id=job.id),
        )

    def _inside_fence(self, margin: float) -> bool:
        fence = self._store.claims_safe_until()
        return fence is None or fence - asyncio.get_running_loop().time() >= margin

    async def _step_back(self, job: OutboundJob) -> None:
        """Too near the fence to start: hand the job back if the store still listens (if
        not, its claim lapses and another replica takes it)."""
        logger.warning(
            "outbox %s: not sent: this replica cannot renew its claim on the database",
            job.id,
            extra=message_fields(conversation=job.conversation, outbox_id=job.id),
        )
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(MIN_SEND_WINDOW):
                await self._store.release_outbound(job.id)

    @contextlib.asynccontextmanager
    async def _fenced(self) -> AsyncIterator[None]:
        """Runs the body until it ends or the fence passes (FencePassed), following the
        fence as heartbeats move it on."""
        fence = self._store.claims_safe_until()
        if fence is None:
            yield
            return
        scope = asyncio.timeout_at(fence)

        async def follow() -> None:
            while True:
                await asyncio.sleep(FENCE_CHECK_INTERVAL)
                moved = self._store.claims_safe_until()
                if moved is not None:
                    scope.reschedule(moved)

        follower = asyncio.create_task(follow())
        try:
            async with scope:
                yield
        except TimeoutError:
            if scope.expired():
                raise FencePassed from None
            raise
        finally:
            follower.cancel()

    async def _after_error(self, job: OutboundJob, error: TwilioError, *, in_doubt: bool) -> None:
        # A 429 has already slowed the limiter down: it saw the error leave its slot.
        retry_after = error.retry_after if isinstance(error, TwilioApiError) else None
        now = self._clock()
        decision = self._policy.decide(
            attempts=job.attempts + 1,
            created_at=job.created_at,
            now=now,
            retryable=error.retryable,
            retry_after=retry_after,
            rng=self._rng,
        )
        code = error.code if isinstance(error, TwilioApiError) else None
        if code == UNSUBSCRIBED_ERROR:
            message = OutboundMessage.from_json(job.payload)
            await self._opt_outs.note_unsubscribed(message, f"error {code} on send")
        if isinstance(decision, GiveUp):
            await self._give_up(job, code, f"{error} ({decision.reason})", dead=decision.dead)
            return
        logger.warning(
            "outbox %s: %s; retrying in %.1fs%s",
            job.id,
            error,
            decision.delay,
            " (will check Twilio first: the message may exist)" if in_doubt else "",
            extra=message_fields(conversation=job.conversation, outbox_id=job.id),
        )
        self._events.retried(job, error)
        await self._store.schedule_retry(job.id, decision.at, str(error), in_doubt=in_doubt)

    async def _give_up(
        self, job: OutboundJob, code: int | None, reason: str, *, dead: bool
    ) -> None:
        logger.error(
            "outbox %s to conversation %s %s: %s",
            job.id,
            job.conversation,
            "dead-lettered" if dead else "failed",
            reason,
            extra=message_fields(conversation=job.conversation, outbox_id=job.id),
        )
        await self._store.mark_failed(job.id, code, reason, dead=dead)
        self._events.failed(job, code, dead)

    async def _find_at_twilio(
        self, message: OutboundMessage, attempt_started: datetime
    ) -> MessageResource | None:
        """The message an in-doubt attempt created, if Twilio has it.

        Lists newest first without a DateSent filter: a message Twilio accepted a moment
        ago may not be sent yet, and DateSent filters skip messages with no date_sent.
        """
        earliest = attempt_started - CLOCK_SKEW
        seen = 0
        pages = self._client.list_pages(to=message.to, from_=message.from_, page_size=50)
        try:
            while seen <= RECONCILE_SCAN_LIMIT:
                # One slot per page: each page is a request against Twilio's limits.
                async with self._limiter.slot(None):
                    page = await anext(pages, None)
                if page is None:
                    return None
                for candidate in page:
                    seen += 1
                    created = candidate.date_created
                    if created is not None and created < earliest - timedelta(minutes=5):
                        return None  # far older than the attempt: nothing further can match
                    if not _same_message(candidate, message):
                        continue
                    if created is not None and created < earliest:
                        continue
                    # An identical earlier reply (a person who sent "hi" twice gets two
                    # "Hello!"s) is another row's message, not this attempt's.
                    if await self._store.find_outbound_by_sid(candidate.sid) is not None:
                        continue
                    return candidate
        finally:
            await pages.aclose()
        return None


def _same_message(candidate: MessageResource, message: OutboundMessage) -> bool:
    if candidate.direction is not None and not candidate.direction.startswith("outbound"):
        return False
    if (
        message.messaging_service_sid
        and candidate.messaging_service_sid != message.messaging_service_sid
    ):
        return False
    if message.options.content_sid is not None:
        # Twilio's body is the template rendered, not ours: the sender and time must do.
        return True
    return (candidate.body or "") == message.body
