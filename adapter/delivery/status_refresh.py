"""Ask Twilio for the status of sent messages whose callbacks never came.

Status callbacks can be lost (the adapter was down, a proxy failed). At start, and then
periodically, messages without a final status after `refresh_after` are fetched with
Get Message and their status recorded like a callback's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from adapter.delivery.periodic import Periodic
from adapter.logs import message_fields
from adapter.store.base import Store, StoreError
from adapter.twilio.client import TwilioClient
from adapter.twilio.errors import TwilioError

logger = logging.getLogger("adapter.status")


class StatusRefresher:
    def __init__(
        self,
        store: Store,
        client: TwilioClient,
        record: Callable[[str, str, int | None], Awaitable[None]],
        *,
        refresh_after: timedelta,
        batch: int = 100,
    ) -> None:
        self._store = store
        self._client = client
        self._record = record
        self._refresh_after = refresh_after
        self._batch = batch
        interval = min(refresh_after.total_seconds(), 60.0)
        self._periodic = Periodic("status refresh", self._round, interval, logger)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def refresh_once(self) -> int:
        """Refresh one batch; returns how many messages were asked about."""
        older_than = datetime.now(UTC) - self._refresh_after
        records = await self._store.unfinished_sent(older_than, self._batch)
        for record in records:
            if record.message_sid is None:
                continue
            try:
                message = await self._client.get_message(record.message_sid)
            except TwilioError as error:
                logger.warning(
                    "could not refresh status of %s: %s",
                    record.message_sid,
                    error,
                    extra=message_fields(record.message_sid, record.conversation),
                )
                continue
            await self._record(message.sid, message.status, message.error_code)
        return len(records)

    async def _round(self) -> bool:
        try:
            # A message Twilio could not tell us about waits for the next round.
            await self.refresh_once()
        except StoreError as error:
            logger.warning("status refresh: the store failed (%s); trying again soon", error)
            return False
        return True
