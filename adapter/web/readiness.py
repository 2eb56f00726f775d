"""`/readyz`: whether this replica should be sent traffic, asked of the store itself.

A replica whose store cannot take a write answers every webhook 503; a load balancer
that still sends it Twilio's webhooks only delays them. So readiness is a real write,
committed (`Store.check_writable`), not the memory of the last one. Its answer is kept
for a moment and shared by the probes that arrive meanwhile, so a burst of probes (or
someone polling /readyz in a loop) costs one write, and a store that hangs costs a
timeout, never a pile of waiting probes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from adapter.store.base import Store, StoreError

logger = logging.getLogger("adapter.web")

# How long a verdict is reused, and how long a write may take before the store counts
# as unable to take one (SQLite waits up to its busy timeout for a lock held elsewhere).
VERDICT_SECONDS = 1.0
PROBE_TIMEOUT = 2.0


class StoreReadiness:
    def __init__(
        self,
        store: Store,
        *,
        verdict_seconds: float = VERDICT_SECONDS,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self._store = store
        self._verdict_seconds = verdict_seconds
        self._timeout = timeout
        self._verdict: str | None = None
        self._checked_at = float("-inf")
        self._probe: asyncio.Task[str | None] | None = None
        self._was_ready = True

    async def problem(self) -> str | None:
        """None when the store takes writes; else what is wrong, fit for an operator."""
        if time.monotonic() - self._checked_at < self._verdict_seconds:
            return self._verdict
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._check())
        # Shielded: a probe whose client hung up must not cancel the one others wait on.
        return await asyncio.shield(self._probe)

    async def _check(self) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.check_writable()
            verdict = None
        except TimeoutError:
            verdict = f"the store took more than {self._timeout:g}s to commit a write"
        except StoreError as error:
            verdict = f"the store cannot take writes: {error}"
        self._verdict, self._checked_at = verdict, time.monotonic()
        ready = verdict is None
        if ready != self._was_ready:
            if ready:
                logger.info("ready again: the store takes writes")
            else:
                logger.warning("not ready: %s", verdict)
            self._was_ready = ready
        return verdict
