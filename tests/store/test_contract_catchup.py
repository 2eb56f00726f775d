"""Contract: what inbound catch-up needs of a store (every backend): texts ordered by
when Twilio received them, a watermark that only moves forward, and a lease that lets
one replica of a fleet work at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from adapter.store.base import Store
from tests.store.conftest import Reopen, StoreFactory

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LEASE = 60.0


async def claimed_ids(store: Store) -> list[str]:
    return [job.message_id for job in await store.claim_inbound(10, LEASE)]


async def handle_all(store: Store) -> list[str]:
    """Claim and finish texts until none is left; the order they were handled in."""
    handled: list[str] = []
    while jobs := await store.claim_inbound(10, LEASE):
        for job in jobs:
            handled.append(job.message_id)
            await store.finish_inbound(job.id, [])
    return handled


# --- order by receipt ----------------------------------------------------------------


async def test_a_text_caught_up_late_goes_before_later_texts_still_pending(store: Store) -> None:
    # The webhook stored "third" first; catch-up then found the two Twilio received earlier.
    assert await store.add_inbound("SM3", "A", {}, T0 + timedelta(seconds=30))
    assert await store.add_inbound("SM2", "A", {}, T0 + timedelta(seconds=20))
    assert await store.add_inbound("SM1", "A", {}, T0 + timedelta(seconds=10))

    assert await handle_all(store) == ["SM1", "SM2", "SM3"]


async def test_texts_received_in_the_same_instant_keep_the_order_they_were_added(
    store: Store,
) -> None:
    for sid in ("SMb", "SMa", "SMc"):
        assert await store.add_inbound(sid, "A", {}, T0)

    assert await handle_all(store) == ["SMb", "SMa", "SMc"]


async def test_an_older_text_waits_while_a_later_one_of_its_conversation_is_claimed(
    store: Store,
) -> None:
    assert await store.add_inbound("SM2", "A", {}, T0 + timedelta(seconds=20))
    [job] = await store.claim_inbound(10, LEASE)
    # Found by catch-up while the bot handles SM2: it must not run beside it.
    assert await store.add_inbound("SM1", "A", {}, T0 + timedelta(seconds=10))
    assert await store.add_inbound("SMx", "B", {}, T0)

    assert await claimed_ids(store) == ["SMx"]
    await store.finish_inbound(job.id, [])
    assert await claimed_ids(store) == ["SM1"]


# --- the watermark --------------------------------------------------------------------


async def test_the_watermark_starts_unset_and_moves_only_forward(store: Store) -> None:
    assert await store.catchup_watermark() is None

    assert await store.advance_catchup_watermark(T0) == T0
    assert await store.advance_catchup_watermark(T0 - timedelta(minutes=5)) == T0
    later = T0 + timedelta(seconds=61, microseconds=500_000)
    assert await store.advance_catchup_watermark(later) == later

    assert await store.catchup_watermark() == later


async def test_the_watermark_survives_a_restart(store: Store, reopen: Reopen) -> None:
    await store.advance_catchup_watermark(T0)
    store = await reopen(store)
    moment = await store.catchup_watermark()
    assert moment == T0
    assert moment is not None and moment.utcoffset() == timedelta(0)


# --- the lease ------------------------------------------------------------------------


async def test_a_lease_is_held_by_one_holder_until_released(store: Store) -> None:
    assert await store.hold_lease("catchup", "replica-1", LEASE)
    assert await store.hold_lease("catchup", "replica-1", LEASE)  # a renewal
    assert not await store.hold_lease("catchup", "replica-2", LEASE)
    assert await store.hold_lease("other", "replica-2", LEASE)  # leases are by name

    await store.release_lease("catchup", "replica-2")  # not its lease: nothing happens
    assert not await store.hold_lease("catchup", "replica-2", LEASE)
    await store.release_lease("catchup", "replica-1")
    assert await store.hold_lease("catchup", "replica-2", LEASE)


async def test_a_lease_that_ran_out_can_be_taken_by_another(store: Store) -> None:
    assert await store.hold_lease("catchup", "replica-1", 0.2)
    assert not await store.hold_lease("catchup", "replica-2", LEASE)
    await asyncio.sleep(0.3)
    assert await store.hold_lease("catchup", "replica-2", LEASE)
    assert not await store.hold_lease("catchup", "replica-1", LEASE)


async def test_of_two_stores_on_one_database_one_holds_the_lease(
    store: Store, store_factory: StoreFactory
) -> None:
    other = store_factory()
    if other is store:  # the memory store is its own database: nothing to share
        assert await store.hold_lease("catchup", "one", LEASE)
        return
    await other.open()
    try:
        results = await asyncio.gather(
            store.hold_lease("catchup", "one", LEASE), other.hold_lease("catchup", "two", LEASE)
        )
        assert sorted(results) == [False, True]
    finally:
        await other.close()
