"""The Twilio account's limits, held for the whole fleet of replicas in PostgreSQL.

`AccountLimiter` (adapter.ratelimit) counts the requests of one process;
three replicas with it would make three times the requests Twilio allows. This
`Limiter` keeps the same rules with the state in the database all replicas share:

- the rate, as Twilio counts it: one `rate_request` row per request, which holds a
  place from its start until its answer (`done_at`) and for `rate.per_seconds` after;
  a request may start while fewer than `rate.count` places are held, by the
  database's clock (one clock for the fleet; see adapter.ratelimit for why the
  window runs from the answer);
- concurrency: rows not yet done count as in flight, but only while the replica that
  made them is alive (its heartbeat, kept by the store), so a replica that dies
  mid-request does not hold its slots forever;
- a sender's pace: `rate_sender.next_start`, spaced from the actual starts, and the
  sender's own places (`sender_rate`), held the same way;
- a 429 pause: `rate_pause`; a 429 seen by one replica pauses them all.

Each admission is one call of the `rate_admit` function (adapter/store/postgres/schema.py):
one round trip, one short transaction under an advisory lock per account, so the checks
and the bookkeeping of two replicas never interleave. Within a process the
waiters queue (first come, first served) and only the head asks the database, so a
backlog costs the database one query per admission, not one per waiter. A request
held back only by its sender's pace waits outside that queue, as in AccountLimiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from adapter.ratelimit import LimiterBase, Rate, Waiting, sender_rate
from adapter.store.base import StoreError
from adapter.twilio.errors import TwilioRateLimited

logger = logging.getLogger("adapter.ratelimit")

# A request in flight longer than this is not counted any more, even if its replica
# lives: far beyond any timeout the Twilio client uses.
MAX_REQUEST_SECONDS = 600.0
# How often the head of the queue asks again while the account's requests in flight
# are at the cap (a slot frees when a request of any replica ends).
CONCURRENCY_POLL = 0.05


class FleetDatabase(Protocol):
    """What the limiter needs of the PostgreSQL store (which builds it: `store.limiter()`)."""

    @property
    def schema(self) -> str: ...

    @property
    def replica_id(self) -> str: ...

    def connection(self) -> AbstractAsyncContextManager[Any]: ...


@dataclass(frozen=True)
class _Verdict:
    request_id: int | None  # set when admitted
    wait: float = 0.0  # seconds before asking again
    sender_only: bool = False  # only the sender's pace holds it back


class PostgresLimiter(LimiterBase):
    """The limits of one Twilio account (`scope`), for every replica on `store`."""

    def __init__(
        self,
        store: FleetDatabase,
        *,
        max_concurrency: int,
        rate: Rate,
        per_sender_mps: float | None = None,
        scope: str = "twilio",
    ) -> None:
        # The pause (self._pause) is our own copy of one we asked for, so that our next
        # request honours it even before the database has it.
        super().__init__(
            max_concurrency=max_concurrency,
            rate=rate,
            per_sender_mps=per_sender_mps,
            clock=time.monotonic,
        )
        self._store = store
        self._scope = scope
        self._sender_rate = None if per_sender_mps is None else sender_rate(per_sender_mps)
        self._queue = asyncio.Lock()
        self._sharing: set[asyncio.Task[None]] = set()

    def slot(self, sender: str | None = None) -> AbstractAsyncContextManager[None]:
        return self._slot(sender)

    def slow_down(self, retry_after: float | None) -> None:
        pause = self._pause.on_429(retry_after)
        if pause is None:
            return
        task = asyncio.get_running_loop().create_task(self._share_pause(pause))
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)

    @contextlib.asynccontextmanager
    async def _slot(self, sender: str | None) -> AsyncIterator[None]:
        arrived = self._clock()
        waiting = Waiting()
        try:
            request_id = await self._acquire(sender, waiting)
        finally:
            # Cancelled waits count too: they are time callers spent blocked.
            self._count_wait(arrived, waiting)
        slowdowns_at_start = self._pause.slowdowns
        self._in_flight += 1
        try:
            yield
            self._pause.on_success(slowdowns_at_start)
        except TwilioRateLimited as error:
            self.slow_down(error.retry_after)  # as AccountLimiter: the slot hears the 429
            raise
        finally:
            self._in_flight -= 1
            await self._finished(request_id)

    async def _acquire(self, sender: str | None, waiting: Waiting) -> int:
        """Wait until the fleet's limits let one more request start; record it started."""
        paced = sender if self._sender_interval is not None else None
        if self._queue.locked():
            waiting.blocked = True
        while True:
            async with self._queue:
                while True:
                    paused = self._pause.paused_until - self._clock()
                    if paused > 0:
                        waiting.blocked = True
                        await asyncio.sleep(paused)
                        continue
                    verdict = await self._try_admit(paced)
                    if verdict.request_id is not None:
                        return verdict.request_id
                    waiting.blocked = True
                    if verdict.sender_only:
                        break
                    await asyncio.sleep(verdict.wait)
            await asyncio.sleep(verdict.wait)  # out of the queue: others may go meanwhile

    async def _try_admit(self, sender: str | None) -> _Verdict:
        async with self._store.connection() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM rate_admit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                self._scope,
                f"sms-adapter rate {self._store.schema}.{self._scope}",
                self._store.replica_id,
                self._rate.count,
                self._rate.per_seconds,
                self._max_concurrency,
                MAX_REQUEST_SECONDS,
                sender,
                self._sender_interval,
                None if self._sender_rate is None else self._sender_rate.count,
                None if self._sender_rate is None else self._sender_rate.per_seconds,
            )
        assert row is not None
        if row["request_id"] is not None:
            return _Verdict(row["request_id"])
        wait = CONCURRENCY_POLL if row["wait"] < 0 else row["wait"]
        return _Verdict(None, wait, sender_only=row["sender_only"])

    async def _finished(self, request_id: int) -> None:
        try:
            async with self._store.connection() as conn:
                await conn.execute("SELECT rate_done($1)", request_id)
        except StoreError as error:
            # The slot stays taken until this replica's heartbeat lapses or it ages out.
            logger.warning("could not free a Twilio request slot: %s", error)

    async def _share_pause(self, seconds: float) -> None:
        try:
            async with self._store.connection() as conn:
                await conn.execute(
                    """
                    INSERT INTO rate_pause (scope, paused_until)
                    VALUES ($1, clock_timestamp() + make_interval(secs => $2))
                    ON CONFLICT (scope) DO UPDATE
                    SET paused_until = greatest(rate_pause.paused_until, excluded.paused_until)
                    """,
                    self._scope,
                    seconds,
                )
        except StoreError as error:
            logger.warning("could not tell the other replicas to pause after a 429: %s", error)
