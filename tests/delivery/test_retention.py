"""The retention worker deletes what is finished and old, in batches, and keeps the rest."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapter.delivery import periodic as periodic_module
from adapter.delivery.events import ChannelEvents
from adapter.delivery.retention import RetentionWorker
from adapter.store.base import HistoryEntry, ReplyDraft, StoreError
from adapter.store.sqlite import SQLiteStore

START = datetime(2026, 3, 1, tzinfo=UTC)


class CountingEvents(ChannelEvents):
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.deleted = asyncio.Event()

    def retention_deleted(self, rows: int) -> None:
        self.batches.append(rows)
        self.deleted.set()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "retention.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def entry(number: int, at: datetime) -> HistoryEntry:
    return HistoryEntry(
        sid=f"SM{number:04d}",
        conversation="+15550001111|+15550002222",
        direction="inbound",
        status="received",
        error_code=None,
        body=f"text {number}",
        num_media=0,
        num_segments=1,
        at=at,
        payload={},
    )


async def handle(store: SQLiteStore, message_id: str, reply: str) -> int:
    await store.add_inbound(message_id, "A", {"body": message_id}, datetime.now(UTC))
    [job] = await store.claim_inbound(1, 60)
    [row] = await store.finish_inbound(job.id, [ReplyDraft("A", {"body": reply})])
    return row


async def test_old_history_goes_in_batches_and_the_recent_stays(store: SQLiteStore) -> None:
    # 25 entries a day apart; 10 days of retention on day 24 leaves days 15 to 24.
    await store.save_history([entry(i, START + timedelta(days=i)) for i in range(25)])
    events = CountingEvents()
    worker = RetentionWorker(
        store,
        timedelta(days=10),
        batch=5,
        pause=timedelta(0),
        events=events,
        clock=lambda: START + timedelta(days=24, hours=1),
    )

    assert await worker.delete_expired() == 15

    assert events.batches == [5, 5, 5]
    kept = await store.read_history("+15550001111|+15550002222", limit=100)
    assert [e.body for e in kept] == [f"text {i}" for i in range(15, 25)]


async def test_a_handled_text_goes_with_its_reply_once_delivered(store: SQLiteStore) -> None:
    old = await handle(store, "SMold", "old reply")
    [job] = await store.claim_outbound(10, 60, datetime.now(UTC))
    await store.mark_sent(job.id, "SMreply", "delivered")
    waiting = await handle(store, "SMwaiting", "unsent reply")  # pending in the outbox
    worker = RetentionWorker(
        store, timedelta(seconds=1), clock=lambda: datetime.now(UTC) + timedelta(minutes=1)
    )

    await worker.delete_expired()

    assert await store.get_outbound(old) is None
    assert await store.add_inbound("SMold", "A", {}, datetime.now(UTC))  # forgotten
    pending = await store.get_outbound(waiting)
    assert pending is not None and pending.state == "pending"
    assert not await store.add_inbound("SMwaiting", "A", {}, datetime.now(UTC))  # kept


async def test_the_running_worker_deletes_at_start_and_stops_cleanly(store: SQLiteStore) -> None:
    await store.save_history([entry(1, START)])
    events = CountingEvents()
    worker = RetentionWorker(store, timedelta(days=1), interval=timedelta(hours=1), events=events)
    worker.start()
    try:
        async with asyncio.timeout(5):
            await events.deleted.wait()
    finally:
        await worker.stop()
    assert await store.read_history("+15550001111|+15550002222", limit=10) == []


class GoesAwayOnce:
    """The store, whose first delete fails as a store that went away does."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.failed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def delete_older_than(self, *args: object, **kwargs: object) -> int:
        if not self.failed:
            self.failed = True
            raise StoreError("database is locked")
        return await self.store.delete_older_than(*args, **kwargs)  # type: ignore[arg-type]


async def test_a_store_that_goes_away_mid_round_is_tried_again_soon_and_nothing_recent_goes(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(periodic_module, "RETRY_FIRST", 0.01)  # "soon", without the wait
    await store.save_history([entry(1, START), entry(2, datetime.now(UTC))])
    events = CountingEvents()
    flaky = GoesAwayOnce(store)
    # An hour between rounds: only the retry after the failure can delete the old row.
    worker = RetentionWorker(
        flaky,  # type: ignore[arg-type]
        timedelta(days=1),
        interval=timedelta(hours=1),
        events=events,
    )
    worker.start()
    try:
        async with asyncio.timeout(10):
            await events.deleted.wait()
    finally:
        await worker.stop()
    assert flaky.failed
    assert "could not delete old rows (database is locked)" in caplog.text
    [kept] = await store.read_history("+15550001111|+15550002222", limit=10)
    assert kept.sid == "SM0002"


def test_a_retention_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        RetentionWorker(SQLiteStore(tmp_path / "x.sqlite3"), timedelta(0))
