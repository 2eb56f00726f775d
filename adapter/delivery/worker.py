"""The claim loop shared by the dispatcher and the sender.

A worker claims jobs from the store up to its concurrency, runs each in a task, and
sleeps until woken (new work committed in this process) or a poll interval passes
(work committed elsewhere, retries coming due, leases expiring).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger("adapter.delivery")

Job = TypeVar("Job")

# Small against the latency budget (a reply within tens of milliseconds), large
# against a store round trip.
CLAIM_INTERVAL = 0.002


class ClaimLoopWorker(Generic[Job]):
    """A worker built on one ClaimLoop (`self._loop`): the dispatcher and the sender."""

    _loop: ClaimLoop[Job]

    def start(self) -> None:
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    async def stop(self, timeout: float) -> None:
        await self._loop.stop(timeout)


class ClaimLoop(Generic[Job]):
    def __init__(
        self,
        name: str,
        *,
        claim: Callable[[int], Awaitable[list[Job]]],
        handle: Callable[[Job], Awaitable[None]],
        release: Callable[[Job], Awaitable[None]],
        concurrency: int,
        poll_interval: float,
    ) -> None:
        self.name = name
        self._claim = claim
        self._handle = handle
        self._release = release
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._running: dict[asyncio.Task[None], Job] = {}
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._slot_freed = asyncio.Event()
        self._last_claim = 0.0

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name=f"{self.name}-loop")

    async def _run(self) -> None:
        while not self._stopping:
            # Cleared before the free slots are counted, not after the claim: a job that
            # ends while the claim is under way must still wake the wait for a slot.
            self._slot_freed.clear()
            free = self._concurrency - len(self._running)
            jobs: list[Job] = []
            if free > 0:
                await self._pace()
                self._wakeup.clear()
                try:
                    jobs = await self._claim(free)
                except Exception:
                    # The store is unavailable (disk full, locked): keep trying, lose nothing.
                    logger.exception("%s: claiming work failed; retrying", self.name)
                    await asyncio.sleep(self._poll_interval)
                    continue
                for job in jobs:
                    task = asyncio.create_task(self._guarded(job))
                    self._running[task] = job
                    task.add_done_callback(self._done)
            if self._stopping:
                break
            if jobs and len(jobs) == free:
                # Claimed all we could: claim again as soon as a slot frees up.
                await self._wait(self._slot_freed)
            elif not jobs:
                await self._wait(self._wakeup)

    async def _pace(self) -> None:
        """Claim at most once per CLAIM_INTERVAL. Under load every webhook and every
        finished job wakes the loop; claiming on each wake-up would cost a store round
        trip per text, while waiting a moment lets one claim pick up a batch."""
        loop = asyncio.get_running_loop()
        wait = self._last_claim + CLAIM_INTERVAL - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_claim = loop.time()

    async def _wait(self, event: asyncio.Event) -> None:
        try:
            await asyncio.wait_for(event.wait(), timeout=self._poll_interval)
        except TimeoutError:
            pass

    async def _guarded(self, job: Job) -> None:
        try:
            await self._handle(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            # `handle` records outcomes itself; reaching here is a bug or a store outage.
            # The claim's lease expires and the job runs again.
            logger.exception("%s: unexpected error handling a job", self.name)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        self._slot_freed.set()
        # A job finishing may unblock the next one of its conversation.
        self._wakeup.set()

    async def stop(self, timeout: float) -> None:
        """Stop claiming, give running jobs `timeout` seconds, then cancel and release them."""
        self._stopping = True
        self._wakeup.set()
        self._slot_freed.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=timeout)
            for task in pending:
                job = self._running.get(task)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                if job is not None:
                    try:
                        await self._release(job)
                    except Exception:
                        logger.exception(
                            "%s: could not hand back a job; its lease will expire", self.name
                        )
