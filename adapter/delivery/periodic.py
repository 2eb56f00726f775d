"""A round of background work run at start and then every interval, until stopped.

The status refresher, inbound catch-up and retention each run one round, sleep, and go
again; a store or Twilio outage never ends the worker. A round that failed (it said so, or
raised) is tried again soon, after a pause that doubles from RETRY_FIRST up to the
interval: a catch-up that found Twilio unreachable at start (the network not up yet)
must not wait a whole interval to bring in the texts sent while the adapter was down.
A round given `round_timeout` that runs longer (a store call that never returns) is
cancelled and counts as failed: a worker must not stop for good without a word. This holds
that loop once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

RETRY_FIRST = 1.0


class Periodic:
    def __init__(
        self,
        name: str,
        round_: Callable[[], Awaitable[bool]],  # False: it failed, try again soon
        interval: float,
        logger: logging.Logger,
        *,
        round_timeout: float | None = None,
    ) -> None:
        self._name = name
        self._round = round_
        self._interval = interval
        self._logger = logger
        self._round_timeout = round_timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Cancel the round under way, if any, and wait for it to end."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        retry = RETRY_FIRST
        while True:
            try:
                async with asyncio.timeout(self._round_timeout):
                    succeeded = await self._round()
            except TimeoutError:
                self._logger.warning(
                    "%s took longer than %.0f s and was cut short; trying again later",
                    self._name,
                    self._round_timeout,
                )
                succeeded = False
            except Exception:
                # The worker's own round logs what it expects (a store or Twilio outage);
                # this is the last line for what it did not, and the loop goes on.
                self._logger.exception("%s failed; trying again later", self._name)
                succeeded = False
            if succeeded:
                retry = RETRY_FIRST
                await asyncio.sleep(self._interval)
            else:
                await asyncio.sleep(min(retry, self._interval))
                retry *= 2
