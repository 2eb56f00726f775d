"""Retention: what is finished and older than SMS_ADAPTER_RETENTION is deleted.

Handled texts, finished replies and their statuses, the history cache and a channel's
own expiring records (the Bot Framework bridge's) would otherwise grow forever, and they
hold message bodies and phone numbers: personal data nobody should keep without end.

Every `interval` (and at start) this worker asks the store to delete, in batches of
`batch` rows per kind with a `pause` between them, everything finished before now minus
`retention`, until a batch finds nothing. Small batches keep each transaction short, so
the texts arriving meanwhile never wait behind a long delete; the pause leaves the store
to them. Pending work, conversation state and opt-outs are never deleted (see
`Store.delete_older_than`). Replicas sharing PostgreSQL may all run it: a row one is
deleting the others skip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from adapter.delivery.events import NO_EVENTS, ChannelEvents
from adapter.delivery.periodic import Periodic
from adapter.store.base import Store, StoreError

logger = logging.getLogger("adapter.retention")

DEFAULT_INTERVAL = timedelta(minutes=5)
DEFAULT_BATCH = 1000
DEFAULT_PAUSE = timedelta(milliseconds=200)


class RetentionWorker:
    def __init__(
        self,
        store: Store,
        retention: timedelta,
        *,
        expiring_state_prefixes: tuple[str, ...] = (),
        interval: timedelta = DEFAULT_INTERVAL,
        batch: int = DEFAULT_BATCH,
        pause: timedelta = DEFAULT_PAUSE,
        events: ChannelEvents = NO_EVENTS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if retention <= timedelta(0):
            raise ValueError("retention must be positive")
        self._store = store
        self._retention = retention
        self._prefixes = expiring_state_prefixes
        self._interval = interval
        self._batch = batch
        self._pause = pause
        self._events = events
        self._clock = clock
        self._periodic = Periodic("retention", self._round, interval.total_seconds(), logger)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def delete_expired(self) -> int:
        """Delete, batch after batch, everything older than the retention; returns how
        many rows went. The cutoff is fixed at the start: rows that expire meanwhile wait
        for the next round rather than keep this one going."""
        cutoff = self._clock() - self._retention
        total = 0
        while True:
            deleted = await self._store.delete_older_than(
                cutoff, self._batch, expiring_state_prefixes=self._prefixes
            )
            if deleted:
                total += deleted
                self._events.retention_deleted(deleted)
            if deleted == 0:
                return total
            await asyncio.sleep(self._pause.total_seconds())

    async def _round(self) -> bool:
        try:
            deleted = await self.delete_expired()
        except StoreError as error:
            logger.warning("retention: could not delete old rows (%s); trying again later", error)
            return False
        if deleted:
            logger.info("retention: deleted %d rows older than %s", deleted, self._retention)
        return True
