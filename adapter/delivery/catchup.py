"""Inbound catch-up: texts Twilio received whose webhook never reached us, found through
List Messages and handed to the same store path as the webhook.

Twilio retries a failed messaging webhook only as its connection overrides allow (once,
for connection failures, by default), then gives up; the text stays at Twilio, received.
So at start and then every SMS_ADAPTER_CATCHUP_INTERVAL this worker lists the inbound
messages to each of our numbers since its watermark and adds every one to the store.
The store's dedup on MessageSid makes the texts we already have (and a webhook that
comes late) harmless, and its order of receipt puts a text found late before the later
texts of its conversation that are still pending.

One round:
- takes the fleet's lease (one replica lists at a time; the others skip the round);
- lists, per number, from the watermark minus MARGIN (Twilio dates messages to the whole
  second and a new message can take a moment to show up in lists), newest first, with
  the largest page size, each request through the account's rate limiter, stopping at
  the first message older than that, and at most `max_requests` requests in all;
- adds what it found, oldest first; a text older than `max_age` is added flagged late
  (recorded and counted; the dispatcher gives it only to bots that ask for late texts);
- moves the watermark to the round's start, only if the round saw everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapter.delivery.events import NO_EVENTS, ChannelEvents
from adapter.delivery.periodic import Periodic
from adapter.logs import message_fields
from adapter.ratelimit import Limiter
from adapter.store.base import Store, StoreError
from adapter.twilio.client import MAX_PAGE_SIZE, TwilioClient
from adapter.twilio.errors import TwilioError, TwilioRateLimited
from adapter.twilio.listed_inbound import INBOUND_DIRECTION, inbound_from_resource, received_at
from adapter.twilio.resources import MessageResource

logger = logging.getLogger("adapter.catchup")

LEASE_NAME = "inbound-catchup"
# Twilio's dates are whole seconds, and a message can take a moment to be listed.
MARGIN = timedelta(minutes=2)
MAX_REQUESTS_PER_ROUND = 50

# Our numbers, as List Messages' `To` filter wants them (+E.164, or whatsapp:+E.164).
NumberSource = Callable[[], Awaitable[list[str]]]


@dataclass(frozen=True)
class RoundReport:
    """What one round did (for logs, /readyz and tests)."""

    held_lease: bool
    complete: bool = False  # every number listed back to the watermark
    requests: int = 0
    found: int = 0  # inbound messages listed since the watermark
    caught_up: int = 0  # of them, new to the store and young enough for bots
    too_old: int = 0  # of them, new to the store and older than max_age
    error: str | None = None


class InboundCatchUp:
    def __init__(
        self,
        store: Store,
        client: TwilioClient,
        limiter: Limiter,
        numbers: NumberSource,
        *,
        holder: str,
        interval: timedelta,
        max_age: timedelta,
        wake: Callable[[], None],
        events: ChannelEvents = NO_EVENTS,
        max_requests: int = MAX_REQUESTS_PER_ROUND,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError("interval must be positive (a channel without catch-up has none)")
        self._store = store
        self._client = client
        self._limiter = limiter
        self._numbers = numbers
        self._holder = holder
        self._interval = interval
        self._max_age = max_age
        self._wake = wake
        self._events = events
        self._max_requests = max_requests
        self._clock = clock
        # Long enough to outlast a round and the pause before the next; a replica that
        # dies hands the work to another within about two intervals.
        self._lease_seconds = 2 * interval.total_seconds() + 30.0
        # A round must end well before its lease does, or another replica could start
        # listing beside it.
        self._periodic = Periodic(
            "inbound catch-up",
            self._scheduled_round,
            interval.total_seconds(),
            logger,
            round_timeout=self._lease_seconds / 2,
        )
        self._first_round = asyncio.Event()
        self.last_round: RoundReport | None = None
        self.last_round_at: datetime | None = None

    def start(self) -> None:
        self._periodic.start()

    async def first_round(self, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until the first round has ended or was left
        to another replica; False if it is still running."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._first_round.wait()
        return self._first_round.is_set()

    async def stop(self) -> None:
        await self._periodic.stop()
        with contextlib.suppress(StoreError):
            await self._store.release_lease(LEASE_NAME, self._holder)

    async def _scheduled_round(self) -> bool:
        try:
            report = await self.run_round()
        finally:
            self._first_round.set()  # even for a round that raised or was cut short
        if report.error is not None:
            logger.warning("inbound catch-up round failed: %s", report.error)
            return False
        return True

    async def run_round(self) -> RoundReport:
        """One round (see the module docstring); never raises for Twilio or the store."""
        started = self._clock()
        try:
            if not await self._store.hold_lease(LEASE_NAME, self._holder, self._lease_seconds):
                report = RoundReport(held_lease=False)
            else:
                report = await self._round(started)
        except (TwilioError, StoreError) as error:
            report = RoundReport(held_lease=True, error=str(error))
        self.last_round, self.last_round_at = report, started
        return report

    async def _round(self, started: datetime) -> RoundReport:
        watermark = await self._store.catchup_watermark()
        # Never run before (a new store): texts the age limit would drop are not looked for.
        since = (watermark if watermark is not None else started - self._max_age) - MARGIN
        numbers = await self._numbers()
        found: list[MessageResource] = []
        requests, complete = 0, True
        for number in numbers:
            texts, reached, used = await self._list_since(
                number, since, self._max_requests - requests
            )
            found += reversed(texts)  # listed newest first
            requests += used
            if not reached:
                complete = False
                break
        caught_up = too_old = 0
        # Oldest first, so a conversation's texts found in one round keep their order.
        # Twilio dates to the whole second; within one second its list order (kept by
        # the stable sort) is the order of receipt.
        found.sort(key=lambda message: received_at(message) or started)
        for message in found:
            outcome = await self._hand_over(message, started)
            caught_up += outcome == "caught_up"
            too_old += outcome == "too_old"
        if complete:
            await self._store.advance_catchup_watermark(started)
        else:
            logger.warning(
                "inbound catch-up listed %d pages (its limit per round) without reaching "
                "texts older than %s; the next round goes on from the same point",
                requests,
                since.isoformat(),
            )
        return RoundReport(
            held_lease=True,
            complete=complete,
            requests=requests,
            found=len(found),
            caught_up=caught_up,
            too_old=too_old,
        )

    async def _list_since(
        self, number: str, since: datetime, budget: int
    ) -> tuple[list[MessageResource], bool, int]:
        """(inbound texts to `number` since `since`, whether the list reached `since`,
        requests made). Pages come newest first, so the first older message ends it."""
        texts: list[MessageResource] = []
        used = 0
        pages = self._client.list_pages(
            to=number, date_sent_after=since.date(), page_size=MAX_PAGE_SIZE
        )
        async with aclosing(pages):
            while used < budget:
                try:
                    async with self._limiter.slot():
                        page = await anext(pages)
                except StopAsyncIteration:
                    return texts, True, used
                except TwilioRateLimited as error:
                    self._limiter.slow_down(error.retry_after)
                    raise
                used += 1
                reached = False
                for message in page:
                    at = received_at(message)
                    if at is not None and at < since:
                        reached = True
                    elif message.direction == INBOUND_DIRECTION and message.to == number:
                        texts.append(message)
                if reached:
                    return texts, True, used
        return texts, False, used

    async def _hand_over(self, resource: MessageResource, started: datetime) -> str | None:
        """Add one listed text to the store: "caught_up", "too_old", or None if known."""
        at = received_at(resource)
        late = at is not None and started - at > self._max_age
        try:
            message = inbound_from_resource(resource, late=late)
        except ValueError as error:
            logger.warning("inbound catch-up skipped a message: %s", error)
            return None
        added = await self._store.add_inbound(
            message.message_sid, str(message.conversation), message.to_json(), message.received_at
        )
        if not added:
            return None
        fields = message_fields(message.message_sid, message.conversation)
        if late:
            self._events.inbound("too_old")
            logger.warning(
                "text %s (conversation %s) caught up from List Messages, received %s: older "
                "than SMS_ADAPTER_CATCHUP_MAX_AGE, so recorded and given only to bots "
                "that take late texts",
                message.message_sid,
                message.conversation,
                message.received_at.isoformat(),
                extra=fields,
            )
        else:
            self._events.inbound("caught_up")
            logger.info(
                "text %s (conversation %s) caught up from List Messages, received %s: its "
                "webhook never reached us",
                message.message_sid,
                message.conversation,
                message.received_at.isoformat(),
                extra=fields,
            )
        self._wake()
        return "too_old" if late else "caught_up"
