"""Statuses that arrive before the SID they are about has been recorded.

Twilio can post a message's first status callback while the sender is still reading
Twilio's answer to Send Message, before it has committed the SID it got back: the
callback races the HTTP answer. Dropping such a status as "not ours" would lose it (a
status handler would never hear "queued" or even "delivered"), so it is tried again a
moment later, a few times, then given up as truly not ours.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

logger = logging.getLogger("adapter.status")

# Applies a status; False when its SID is unknown (not recorded yet, or not ours).
ApplyStatus = Callable[[str, str, int | None], Awaitable[bool]]


class EarlyStatuses:
    def __init__(
        self,
        apply: ApplyStatus,
        *,
        delays: Sequence[float] = (0.2, 1.0, 5.0),
        limit: int = 10_000,
    ) -> None:
        self._apply = apply
        self._delays = tuple(delays)
        # Bounded: a flood of callbacks for SIDs that are not ours must not grow memory.
        self._limit = limit
        self._waiting: set[asyncio.Task[None]] = set()

    def hold(self, message_sid: str, status: str, error_code: int | None) -> None:
        if len(self._waiting) >= self._limit:
            logger.warning(
                "too many early statuses waiting; dropping %s for %s", status, message_sid
            )
            return
        task = asyncio.create_task(self._retry(message_sid, status, error_code))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _retry(self, message_sid: str, status: str, error_code: int | None) -> None:
        for delay in self._delays:
            await asyncio.sleep(delay)
            try:
                if await self._apply(message_sid, status, error_code):
                    return
            except Exception:
                logger.exception("could not record early status %s for %s", status, message_sid)
                return
        logger.info("status %s for %s: not a message this adapter sent", status, message_sid)

    async def aclose(self) -> None:
        for task in list(self._waiting):
            task.cancel()
        await asyncio.gather(*self._waiting, return_exceptions=True)
