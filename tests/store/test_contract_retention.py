"""Contract: retention deletes what is finished and old, and nothing else (every backend).

Rows are made "old" by deleting with a cutoff a moment in the future: everything
finished before it is then older than the cutoff, as it is after `SMS_ADAPTER_RETENTION`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adapter.store.base import HistoryEntry, ReplyDraft, Store
from tests.store.conftest import Reopen
from tests.store.test_contract import LONG_LEASE, add_text, claim_rows, finish_text, now

BOT_RECORD = "botframework:bot|+2000"


def soon() -> datetime:
    """A cutoff after everything the test did so far."""
    return now() + timedelta(seconds=1)


def history_entry(sid: str, at: datetime) -> HistoryEntry:
    return HistoryEntry(
        sid=sid,
        conversation="+1000|+2000",
        direction="inbound",
        status="received",
        error_code=None,
        body=f"body {sid}",
        num_media=0,
        num_segments=1,
        at=at,
        payload={"sid": sid},
    )


async def add_newer_work(store: Store) -> None:
    """A pending text and reply after the rows of a test (a backend may keep its newest
    rows whatever their age, see `test_ids_of_deleted_rows_are_never_handed_out_again`)."""
    await add_text(store, "SMnewer", "Z")
    await store.enqueue_outbound([ReplyDraft("Z", {"body": "newer"})])


async def delete_all(store: Store, cutoff: datetime, batch: int = 1000) -> int:
    total = 0
    while deleted := await store.delete_older_than(
        cutoff, batch, expiring_state_prefixes=("botframework:",)
    ):
        total += deleted
    return total


async def test_nothing_newer_than_the_cutoff_is_deleted(store: Store) -> None:
    await add_text(store, "SM1")
    await finish_text(store, "SM1")
    await store.save_history([history_entry("SMh", now())])

    assert await store.delete_older_than(now() - timedelta(hours=1), 100) == 0

    assert not await store.add_inbound("SM1", "A", {}, now())  # still known: a replay
    assert len(await store.read_history("+1000|+2000", limit=10)) == 1


async def test_handled_texts_and_finished_replies_go_with_their_statuses(store: Store) -> None:
    await add_text(store, "SM1")
    [sent, failed, dead] = await finish_text(
        store, "SM1", [ReplyDraft("A", {"body": str(i)}) for i in range(3)]
    )
    for row in await claim_rows(store, now()):
        assert row == sent
        await store.mark_sent(sent, "SMsent", "queued")
    await store.update_status("SMsent", "delivered", None)
    await claim_rows(store, now())
    await store.mark_failed(failed, 21211, "invalid number", dead=False)
    await claim_rows(store, now())
    await store.mark_failed(dead, None, "out of attempts", dead=True)
    await add_text(store, "SM2", "B")  # newer work, not yet handled
    [later] = await store.enqueue_outbound([ReplyDraft("C", {"body": "later"})])

    assert await delete_all(store, soon()) == 4  # the text and its three replies

    for row in (sent, failed, dead):
        assert await store.get_outbound(row) is None
    assert await store.list_outbound("dead") == []
    assert await store.find_outbound_by_sid("SMsent") is None
    # A late status callback for a deleted reply is not ours any more: nothing breaks.
    assert await store.update_status("SMsent", "delivered", None) is None
    assert [r.id for r in await store.list_outbound()] == [later]
    assert [job.message_id for job in await store.claim_inbound(10, LONG_LEASE)] == ["SM2"]


async def test_ids_of_deleted_rows_are_never_handed_out_again(store: Store, reopen: Reopen) -> None:
    """An operator's or a log's outbox id must not come to mean another message."""
    await add_text(store, "SM1")
    replies = await finish_text(store, "SM1", [ReplyDraft("A", {"body": str(i)}) for i in range(3)])
    for row in replies:
        await claim_rows(store, now())
        await store.mark_failed(row, None, "out of attempts", dead=True)
    await delete_all(store, soon())
    store = await reopen(store)

    await add_text(store, "SM2")
    [newer] = await finish_text(store, "SM2", [ReplyDraft("A", {"body": "again"})])

    assert newer > max(replies)
    assert [r.payload["body"] for r in await store.list_outbound()][-1] == "again"


async def test_pending_work_is_never_deleted(store: Store) -> None:
    await add_text(store, "SM1", "A")
    await add_text(store, "SM2", "B")
    [reply] = await finish_text(store, "SM1", [ReplyDraft("A", {"body": "hi"})])
    [claimed, waiting] = await store.enqueue_outbound(
        [ReplyDraft("C", {"body": "claimed"}), ReplyDraft("D", {"body": "retry"})]
    )
    jobs = await store.claim_outbound(10, LONG_LEASE, now())
    assert {job.id for job in jobs} == {reply, claimed, waiting}
    await store.release_outbound(reply)  # pending, unsent
    await store.mark_attempt_started(waiting, now())
    await store.schedule_retry(waiting, now() + timedelta(hours=1), "503", in_doubt=True)

    assert await delete_all(store, soon()) == 0

    # The handled text stays while its reply is unsent: it is what the reply answers.
    assert not await store.add_inbound("SM1", "A", {}, now())
    assert await store.pending_inbound_count() == 1  # SM2, not yet handled
    assert [job.message_id for job in await store.claim_inbound(10, LONG_LEASE)] == ["SM2"]
    for row in (reply, claimed, waiting):
        kept = await store.get_outbound(row)
        assert kept is not None and kept.state == "pending"


async def test_a_reply_still_awaiting_its_final_status_is_kept(store: Store) -> None:
    [row] = await store.enqueue_outbound([ReplyDraft("A", {"body": "hi"})])
    await claim_rows(store, now())
    await store.mark_sent(row, "SMx", "sent")  # not final: delivered or failed may follow
    await add_newer_work(store)

    assert await delete_all(store, soon()) == 0
    assert [r.id for r in await store.unfinished_sent(soon(), 10)] == [row]

    await store.update_status("SMx", "undelivered", 30003)
    assert await delete_all(store, soon()) == 1


async def test_state_opt_outs_and_other_records_are_kept(store: Store) -> None:
    await add_text(store, "SM1")
    [job] = await store.claim_inbound(10, LONG_LEASE)
    await store.finish_inbound(job.id, [], state=("A", {"step": 2}))
    await store.save_state("botframework-number:bot|+1000", {"texted": True})
    await store.save_state(BOT_RECORD, {"person": "+2000"})
    await store.set_opted_out("+1000", "+2000", True, "STOP")
    await store.set_history_synced_through("+1000|+2000", now())
    await add_newer_work(store)

    assert await delete_all(store, soon()) == 2  # the text and the expiring record

    assert await store.load_state("A") == {"step": 2}
    assert await store.load_state("botframework-number:bot|+1000") == {"texted": True}
    assert await store.load_state(BOT_RECORD) == {}
    assert await store.is_opted_out("+1000", "+2000")
    assert await store.history_synced_through("+1000|+2000") is not None


async def test_history_older_than_the_cutoff_goes_newer_stays(store: Store) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await store.save_history(
        [history_entry(f"SM{i:02d}", start + timedelta(days=i)) for i in range(10)]
    )

    assert await delete_all(store, start + timedelta(days=6, hours=1)) == 7

    kept = await store.read_history("+1000|+2000", limit=20)
    assert [entry.sid for entry in kept] == ["SM07", "SM08", "SM09"]


async def test_deletes_in_batches_of_at_most_the_limit(store: Store) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    await store.save_history(
        [history_entry(f"SM{i:02d}", start + timedelta(minutes=i)) for i in range(25)]
    )

    batches = []
    while deleted := await store.delete_older_than(soon(), 10):
        batches.append(deleted)

    assert batches == [10, 10, 5]
    assert await store.read_history("+1000|+2000", limit=50) == []
