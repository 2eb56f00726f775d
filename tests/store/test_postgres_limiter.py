"""The fleet-wide limiter: two replicas (two stores on one database) share one account's
limits. Each test runs both limiters in this process, as two replicas would run them."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from adapter.ratelimit import AccountLimiter, Rate
from adapter.store.postgres.limiter import PostgresLimiter
from adapter.store.postgres.store import PostgresStore
from adapter.store.sqlite import SQLiteStore
from tests.postgres_db import admin_connection, fresh_schema
from tests.servers import wait_for

# Start times are read when `slot()` returns, a little after the database admitted the
# request; a busy machine can delay one reading more than another by this much.
READING_SLACK = 0.25
GENEROUS = Rate(1000, 1.0)


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    async with fresh_schema("ratelimit") as url:
        first, second = PostgresStore(url), PostgresStore(url)
        await first.open()
        await second.open()
        try:
            yield first, second
        finally:
            await first.close()
            await second.close()


def limiters(
    replicas: tuple[PostgresStore, PostgresStore],
    *,
    rate: Rate = GENEROUS,
    max_concurrency: int = 100,
    per_sender_mps: float | None = None,
) -> list[PostgresLimiter]:
    return [
        PostgresLimiter(
            store, max_concurrency=max_concurrency, rate=rate, per_sender_mps=per_sender_mps
        )
        for store in replicas
    ]


async def start_times(
    limiters: list[PostgresLimiter], requests: int, sender: str | None = None
) -> list[float]:
    """Make `requests` requests spread over the limiters; when each was let start."""
    started: list[float] = []

    async def request(limiter: PostgresLimiter) -> None:
        async with limiter.slot(sender):
            started.append(time.monotonic())

    async with asyncio.timeout(30):
        await asyncio.gather(*(request(limiters[i % len(limiters)]) for i in range(requests)))
    return sorted(started)


async def test_the_rate_holds_for_the_fleet_not_per_replica(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    rate = Rate(4, 0.5)

    started = await start_times(limiters(replicas, rate=rate), requests=14)

    # Any `count` + 1 starts span at least a window: never more than `count` in one.
    spans = [
        later - earlier for earlier, later in zip(started, started[rate.count :], strict=False)
    ]
    assert min(spans) >= rate.per_seconds - READING_SLACK


async def test_requests_in_flight_are_capped_for_the_fleet(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    in_flight = 0
    most = 0

    async def request(limiter: PostgresLimiter) -> None:
        nonlocal in_flight, most
        async with limiter.slot():
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1

    pair = limiters(replicas, max_concurrency=2)
    async with asyncio.timeout(30):
        await asyncio.gather(*(request(pair[i % 2]) for i in range(12)))

    assert most <= 2


async def test_a_sender_is_paced_across_replicas(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    started = await start_times(limiters(replicas, per_sender_mps=5), 5, sender="+15550001")

    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert min(gaps) >= 0.2 - READING_SLACK / 2


async def test_a_429_at_one_replica_pauses_the_others(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    told, other = limiters(replicas)

    told.slow_down(retry_after=30)

    async with admin_connection() as conn:
        await wait_for(
            lambda: conn.fetchval(f"SELECT count(*) FROM {replicas[0].schema}.rate_pause")
        )
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5), other.slot():
            pass


async def test_the_slots_of_a_replica_that_is_gone_free_up(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    leaving, staying = limiters(replicas, max_concurrency=1)
    entered, finish = asyncio.Event(), asyncio.Event()

    async def hold_the_only_slot() -> None:
        async with leaving.slot():
            entered.set()
            await finish.wait()

    holder = asyncio.create_task(hold_the_only_slot())
    await asyncio.wait_for(entered.wait(), 10)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3), staying.slot():
            pass

    await replicas[0].close()  # its request never ends, as if the process died mid-request

    async with asyncio.timeout(10), staying.slot():
        pass
    finish.set()
    await holder  # its slot's release fails quietly: the store is gone


@pytest.mark.parametrize(
    ("backend", "expected"), [("sqlite", AccountLimiter), ("postgres", PostgresLimiter)]
)
def test_the_limiter_matches_the_store(backend: str, expected: type) -> None:
    store = (
        SQLiteStore("unused.sqlite3")
        if backend == "sqlite"
        else PostgresStore("postgresql://localhost/unused")
    )
    limiter = store.limiter(max_concurrency=1, rate=Rate(1, 1.0), per_sender_mps=None)
    assert isinstance(limiter, expected)


async def test_a_cancelled_wait_counts_in_the_wait_metrics(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    # A send cancelled while it waits out a 429 pause still spent that time blocked.
    [limiter, _] = limiters(replicas)
    limiter.slow_down(30.0)

    async def wait_for_a_slot() -> None:
        async with limiter.slot():
            pass

    waiter = asyncio.create_task(wait_for_a_slot())
    await asyncio.sleep(0.3)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)

    assert limiter.waits == 1
    assert 0.3 <= limiter.wait_seconds < 0.3 + READING_SLACK * 4


async def test_a_place_is_held_until_the_answer_and_a_window_after_it(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    """Twilio counts arrivals: requests answered slowly (new connections) may arrive
    late, so the next ones wait a window after the answers, not after the starts."""
    fleet = limiters(replicas, rate=Rate(4, 1.0))
    answered: list[float] = []
    warm_starts: list[float] = []

    async def slow(limiter: PostgresLimiter) -> None:
        async with limiter.slot():
            await asyncio.sleep(0.6)
        answered.append(time.monotonic())

    async def warm(limiter: PostgresLimiter) -> None:
        async with limiter.slot():
            warm_starts.append(time.monotonic())

    async with asyncio.timeout(30):
        await asyncio.gather(*(slow(fleet[i % 2]) for i in range(4)))
        await asyncio.gather(*(warm(fleet[i % 2]) for i in range(4)))

    assert min(warm_starts) >= min(answered) + 1.0 - READING_SLACK / 2


async def test_a_senders_places_are_held_until_the_answer(
    replicas: tuple[PostgresStore, PostgresStore],
) -> None:
    fleet = limiters(replicas, per_sender_mps=1)  # one place per second
    spans: list[tuple[float, float]] = []

    async def request(limiter: PostgresLimiter) -> None:
        async with limiter.slot("+15550001"):
            started = time.monotonic()
            await asyncio.sleep(0.5)
        spans.append((started, time.monotonic()))

    async with asyncio.timeout(30):
        await asyncio.gather(*(request(fleet[i % 2]) for i in range(3)))

    spans.sort()
    for (_, answered), (started, _) in itertools.pairwise(spans):
        assert started >= answered + 1.0 - READING_SLACK / 2
