"""Which of the account's numbers send their texts to us: what inbound catch-up lists.

- a route keyed by a number (or `whatsapp:` address): that number;
- a route keyed by a Messaging Service: the service's numbers (its sender pool);
- the default route (`*`): each of the account's numbers whose texts Twilio posts to our
  webhook (`SMS_ADAPTER_PUBLIC_URL/api/sms`), directly or through its TwiML App. Without
  a public URL there is no telling which those are, so none are (a warning says so):
  catching up texts meant for another application would answer people it never meant to.

The answer is kept for `refresh_after`, so a round costs List Messages requests only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from adapter.delivery.routes import DEFAULT_KEY, RouteTable
from adapter.twilio.account import AccountClient, same_webhook
from adapter.twilio.addresses import is_service_sid

logger = logging.getLogger("adapter.catchup")

REFRESH_AFTER = timedelta(minutes=15)


class OurNumbers:
    def __init__(
        self,
        routes: RouteTable,
        account: AccountClient,
        *,
        webhook_url: str | None,
        refresh_after: timedelta = REFRESH_AFTER,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._routes = routes
        self._account = account
        self._webhook_url = webhook_url
        self._refresh_after = refresh_after
        self._clock = clock
        self._numbers: list[str] | None = None
        self._fetched_at: datetime | None = None
        self._warned = False

    async def __call__(self) -> list[str]:
        """Our numbers, looked up again once `refresh_after` has passed. Raises
        TwilioError if Twilio cannot say (the round then fails and is tried again)."""
        now = self._clock()
        if (
            self._numbers is None
            or self._fetched_at is None
            or now - self._fetched_at >= self._refresh_after
        ):
            self._numbers = await self._look_up()
            self._fetched_at = now
        return self._numbers

    async def _look_up(self) -> list[str]:
        numbers: list[str] = []
        for route in self._routes.routes:
            if route.name == DEFAULT_KEY:
                numbers += await self._numbers_posting_to_us()
            elif is_service_sid(route.name):
                numbers += await self._account.list_service_numbers(route.name)
            else:
                numbers.append(route.name)
        return list(dict.fromkeys(numbers))  # once each, in route order

    async def _numbers_posting_to_us(self) -> list[str]:
        if self._webhook_url is None:
            if not self._warned:
                self._warned = True
                logger.warning(
                    "SMS_ADAPTER_PUBLIC_URL is not set: inbound catch-up cannot tell which of "
                    "the account's numbers send their texts here, so it looks for none of "
                    "the default route's texts (name numbers in the routes, or set it)"
                )
            return []
        ours = []
        for number in await self._account.list_incoming_numbers():
            if not number.sms_capable:
                continue
            webhook = await self._account.number_webhook(number)
            if same_webhook(webhook.url, self._webhook_url):
                ours.append(number.phone_number)
        return ours
