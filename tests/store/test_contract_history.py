"""Contract: opt-out state and the conversation history cache (every backend)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from adapter.store.base import HistoryEntry, ReplyDraft, Store
from tests.store.conftest import Reopen

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def entry(
    sid: str, minutes: int, status: str | None = "delivered", conversation: str = "A"
) -> HistoryEntry:
    return HistoryEntry(
        sid=sid,
        conversation=conversation,
        direction="outbound" if sid.endswith("o") else "inbound",
        status=status,
        error_code=None,
        body=f"body {sid}",
        num_media=0,
        num_segments=1,
        at=T0 + timedelta(minutes=minutes),
        payload={"sid": sid},
    )


async def test_opt_out_is_per_number_and_person_and_can_be_undone(
    store: Store, reopen: Reopen
) -> None:
    assert not await store.is_opted_out("+1000", "+2000")
    await store.set_opted_out("+1000", "+2000", True, "STOP")
    assert await store.is_opted_out("+1000", "+2000")
    assert not await store.is_opted_out("+1001", "+2000")  # another of our numbers
    assert not await store.is_opted_out("+1000", "+2001")  # another person
    store = await reopen(store)
    assert await store.is_opted_out("+1000", "+2000")  # durable
    await store.set_opted_out("+1000", "+2000", False, "START")
    assert not await store.is_opted_out("+1000", "+2000")


async def test_history_reads_latest_oldest_first_and_pages_backwards(store: Store) -> None:
    await store.save_history([entry(f"s{i:02d}", i) for i in range(10)])
    await store.save_history([entry("other", 3, conversation="B")])

    latest = await store.read_history("A", limit=4)
    assert [e.sid for e in latest] == ["s06", "s07", "s08", "s09"]
    older = await store.read_history("A", limit=4, before=latest[0].at)
    assert [e.sid for e in older] == ["s02", "s03", "s04", "s05"]
    assert [e.sid for e in await store.read_history("B", limit=10)] == ["other"]


async def test_history_upsert_keeps_status_moving_forward(store: Store) -> None:
    await store.save_history([entry("m1o", 1, status="delivered")])
    await store.save_history([entry("m1o", 1, status="sent")])  # a stale view
    [saved] = await store.read_history("A", limit=1)
    assert saved.status == "delivered"
    await store.save_history([entry("m2o", 2, status="queued")])
    assert [e.sid for e in await store.unfinished_history("A", 10)] == ["m2o"]
    await store.save_history([entry("m2o", 2, status="undelivered")])
    assert await store.unfinished_history("A", 10) == []


async def test_history_upsert_takes_the_newest_fields_but_keeps_a_known_error_code(
    store: Store,
) -> None:
    first = replace(entry("m1o", 1, status="undelivered"), error_code=30003)
    await store.save_history([first])
    newer = replace(entry("m1o", 2, status=None), body="edited", payload={"v": 2})
    await store.save_history([newer])

    [saved] = await store.read_history("A", limit=5)
    assert (saved.body, saved.payload, saved.at) == ("edited", {"v": 2}, newer.at)
    assert saved.error_code == 30003  # a later view without the code does not erase it
    assert saved.status is None  # an entry without a status takes the one given


async def test_history_sync_mark_round_trips(store: Store, reopen: Reopen) -> None:
    assert await store.history_synced_through("A") is None
    await store.set_history_synced_through("A", T0)
    await store.set_history_synced_through("A", T0 + timedelta(days=1))
    store = await reopen(store)
    assert await store.history_synced_through("A") == T0 + timedelta(days=1)


async def test_unknown_pairs_are_not_opted_out(store: Store) -> None:
    assert await store.is_opted_out("+1000", "+2999") is False


async def test_unfinished_history_comes_oldest_first_then_by_sid(store: Store) -> None:
    await store.save_history(
        [entry("m3o", 2, "sent"), entry("m2o", 1, "queued"), entry("m1o", 2, "sending")]
    )
    assert [e.sid for e in await store.unfinished_history("A", 10)] == ["m2o", "m1o", "m3o"]
    assert [e.sid for e in await store.unfinished_history("A", 2)] == ["m2o", "m1o"]
    assert await store.unfinished_history("A", 0) == []


async def test_adapter_times_give_our_own_sub_second_times_of_texts_and_replies(
    store: Store,
) -> None:
    received = datetime(2026, 1, 5, 12, 0, 0, 250_000, tzinfo=UTC)
    await store.add_inbound("SMin", "A", {"body": "one"}, received)
    before_reply = datetime.now(UTC)
    [row] = await store.enqueue_outbound([ReplyDraft("A", {"body": "You said: one"})])
    [job] = await store.claim_outbound(1, 30, datetime.now(UTC))
    await store.mark_sent(job.id, "SMout", "queued")

    times = await store.adapter_times(["SMin", "SMout", "SMnot-ours"])

    assert set(times) == {"SMin", "SMout"}  # a message the adapter never saw is not there
    assert times["SMin"] == received  # to the microsecond, not Twilio's whole second
    record = await store.get_outbound(row)
    assert record is not None and times["SMout"] == record.created_at
    assert times["SMout"] >= before_reply - timedelta(seconds=5)
    assert await store.adapter_times([]) == {}
