"""What only the SQLite store has: its file, its group commits, its loop-side reads."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.store.base import ReplyDraft, StoreError
from adapter.store.sqlite import MIGRATIONS, SQLiteStore
from adapter.store.sqlite_reads import NOT_READ, LoopReader, OptOutCache


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite3"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(path)
    await opened.open()
    yield opened
    await opened.close()


@contextmanager
def write_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the file's write lock from another connection, as another process would."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield other
        other.execute("ROLLBACK")
    finally:
        other.close()


def now() -> datetime:
    return datetime.now(UTC)


async def test_the_file_is_in_wal_mode_at_the_current_schema(
    store: SQLiteStore, path: Path
) -> None:
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        other.close()


def missing_directory(tmp_path: Path) -> Path:
    return tmp_path / "no-such-dir" / "store.sqlite3"


def not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    return path


def a_directory(tmp_path: Path) -> Path:
    return tmp_path


def from_the_future(tmp_path: Path) -> Path:
    path = tmp_path / "store.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    return path


@pytest.mark.parametrize(
    ("make_path", "reason"),
    [
        (missing_directory, "does not exist"),
        (not_a_database, "not a database"),
        (a_directory, "unable to open"),
        (from_the_future, "newer"),
    ],
)
async def test_a_file_that_cannot_be_used_is_refused_with_its_path_and_why(
    tmp_path: Path, make_path: Callable[[Path], Path], reason: str
) -> None:
    bad_path = make_path(tmp_path)
    store = SQLiteStore(bad_path)

    with pytest.raises(StoreError) as refused:
        await store.open()

    assert str(bad_path) in str(refused.value)
    assert reason in str(refused.value)
    with pytest.raises(StoreError, match="not open"):
        await store.pending_inbound_count()
    await store.close()  # harmless on a store that never opened


async def test_a_locked_file_fails_the_call_and_keeps_nothing(path: Path) -> None:
    store = SQLiteStore(path, busy_timeout=0.05)
    await store.open()
    try:
        with write_locked(path), pytest.raises(StoreError, match="locked") as refused:
            await store.add_inbound("SM1", "A", {"body": "hi"}, now())
        assert str(path) in str(refused.value)

        # Twilio retries after our 503, and this time the text is kept.
        assert await store.add_inbound("SM1", "A", {"body": "hi"}, now())
        assert await store.pending_inbound_count() == 1
    finally:
        await store.close()


async def test_a_locked_file_never_stalls_the_event_loop(path: Path) -> None:
    """Statements run on the event loop's thread; a lock held by another process must be
    waited for elsewhere, or every webhook on the server would wait with it."""
    store = SQLiteStore(path, busy_timeout=5)
    await store.open()
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    try:
        ticking = asyncio.create_task(ticker())
        with write_locked(path) as other:
            loop.call_later(0.6, other.execute, "ROLLBACK")  # the other process lets go
            added = await store.add_inbound("SM1", "A", {"body": "hi"}, now())
            other.execute("BEGIN IMMEDIATE")  # what write_locked's exit rolls back
        ticking.cancel()
        assert added is True
        assert await store.pending_inbound_count() == 1
        assert sum(gaps) >= 0.5  # the call did wait for the lock...
        assert max(gaps) < 0.3  # ...and the loop went on meanwhile
    finally:
        await store.close()


async def test_reads_do_not_wait_behind_writes_or_another_process(
    store: SQLiteStore, path: Path
) -> None:
    await store.save_state("A", {"step": 1})
    await store.set_opted_out("+15550001111", "+15552223333", True, "STOP")
    with write_locked(path):
        # A write queued behind the other process's lock...
        blocked = asyncio.create_task(store.save_state("A", {"step": 2}))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        # ...holds up no read, and reads see what was committed, not what waits.
        assert await store.load_state("A") == {"step": 1}
        assert await store.is_opted_out("+15550001111", "+15552223333")
        assert not blocked.done()
    await blocked
    assert await store.load_state("A") == {"step": 2}  # and then what was committed since


def test_a_store_refuses_an_event_loop_other_than_its_own(path: Path) -> None:
    store = SQLiteStore(path)
    other_loop = asyncio.new_event_loop()

    async def open_it() -> None:
        await store.open()

    async def use_it() -> None:
        await store.add_inbound("SM1", "A", {}, now())

    other_loop.run_until_complete(open_it())
    try:
        with pytest.raises(StoreError, match="another event loop"):
            asyncio.run(use_it())
    finally:
        other_loop.run_until_complete(store.close())
        other_loop.close()


async def test_concurrent_calls_share_one_commit(store: SQLiteStore, path: Path) -> None:
    before = store.commits
    with write_locked(path):
        # The writer blocks on the lock with whatever it took first; the rest queue up.
        adds = [
            asyncio.create_task(store.add_inbound(f"SM{i}", f"C{i % 7}", {"n": i}, now()))
            for i in range(100)
        ]
        await asyncio.sleep(0)  # let every task reach the queue

    assert all(await asyncio.gather(*adds))
    assert store.commits - before <= 2
    assert await store.pending_inbound_count() == 100


async def test_a_failing_call_fails_alone_and_leaves_no_trace(
    store: SQLiteStore, path: Path
) -> None:
    for message_id, conversation in [("A1", "A"), ("B1", "B")]:
        await store.add_inbound(message_id, conversation, {}, now())
    jobs = {job.conversation: job for job in await store.claim_inbound(10, 60)}
    # Fail the state upsert, which comes after the reply insert inside finish_inbound.
    other = sqlite3.connect(path)
    other.execute(
        """
        CREATE TRIGGER refuse_a BEFORE INSERT ON conversation_state
        WHEN NEW.conversation = 'A' BEGIN SELECT RAISE(ABORT, 'refused by test'); END
        """
    )
    other.commit()
    other.close()

    finish_a, finish_b, add_c = await asyncio.gather(
        store.finish_inbound(jobs["A"].id, [ReplyDraft("A", {"body": "a"})], state=("A", {})),
        store.finish_inbound(jobs["B"].id, [ReplyDraft("B", {"body": "b"})], state=("B", {})),
        store.add_inbound("C1", "C", {}, now()),
        return_exceptions=True,
    )

    assert isinstance(finish_a, StoreError)
    assert add_c is True
    assert [row.conversation for row in await store.list_outbound()] == ["B"]
    assert finish_b == [row.id for row in await store.list_outbound()]
    assert await store.pending_inbound_count() == 2  # A1 (unfinished) and C1


async def test_a_batch_sqlite_rolls_back_acknowledges_nothing_it_lost(
    store: SQLiteStore, path: Path
) -> None:
    # RAISE(ROLLBACK) ends the whole transaction, as a full disk or an I/O error does.
    other = sqlite3.connect(path)
    other.execute(
        """
        CREATE TRIGGER disk_on_fire BEFORE INSERT ON inbound
        WHEN NEW.message_id = 'poison' BEGIN SELECT RAISE(ROLLBACK, 'disk on fire'); END
        """
    )
    other.commit()
    other.close()
    message_ids = ["SM1", "SM2", "poison", "SM3", "SM4"]

    with write_locked(path):  # so that the calls pile up into (at most) two batches
        adds = [
            asyncio.create_task(store.add_inbound(message_id, message_id, {}, now()))
            for message_id in message_ids
        ]
        await asyncio.sleep(0)
    outcomes = dict(
        zip(message_ids, await asyncio.gather(*adds, return_exceptions=True), strict=True)
    )

    poisoned = outcomes.pop("poison")
    assert isinstance(poisoned, StoreError) and "disk on fire" in str(poisoned)
    acknowledged = sorted(m for m, outcome in outcomes.items() if outcome is True)
    assert all(outcome is True or isinstance(outcome, StoreError) for outcome in outcomes.values())
    stored = sorted(job.message_id for job in await store.claim_inbound(10, 60))
    assert stored == acknowledged
    # The store goes on working after the lost batch.
    assert await store.add_inbound("SM5", "B", {}, now())


async def test_close_runs_the_calls_already_queued(path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    adds = [asyncio.create_task(store.add_inbound(f"SM{i}", "A", {}, now())) for i in range(20)]
    await asyncio.sleep(0)  # queued, not yet run

    await store.close()

    assert all(await asyncio.gather(*adds))
    assert f"sqlite-store:{path}" not in [thread.name for thread in threading.enumerate()]
    with pytest.raises(StoreError, match="not open"):
        await store.add_inbound("late", "A", {}, now())
    reopened = SQLiteStore(path)
    await reopened.open()
    assert await reopened.pending_inbound_count() == 20
    await reopened.close()


# Runs in a child process that dies by SIGKILL: no close(), no checkpoint, nothing
# flushed beyond what each call's commit already made durable.
CRASHING_PROCESS = """
import asyncio, os, signal, sys
from datetime import UTC, datetime
from adapter.store.base import ReplyDraft
from adapter.store.sqlite import SQLiteStore

async def main() -> None:
    store = SQLiteStore(sys.argv[1])
    await store.open()
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for message_id in ["A1", "A2", "B1"]:
        await store.add_inbound(message_id, message_id[0], {"body": message_id}, at)
    jobs = await store.claim_inbound(10, 3600)
    await store.finish_inbound(jobs[0].id, [ReplyDraft("A", {"body": "r"})], state=("A", {"n": 1}))
    [row] = await store.claim_outbound(10, 3600, datetime.now(UTC))
    await store.mark_attempt_started(row.id, at)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_what_a_killed_process_acknowledged_is_kept(path: Path) -> None:
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CRASHING_PROCESS, str(path))
    assert await asyncio.wait_for(child.wait(), timeout=60) == -signal.SIGKILL

    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.pending_inbound_count() == 2
        assert await store.load_state("A") == {"n": 1}
        # The dead process's leases are gone: B1 and A2 are claimable at once.
        claimed = await store.claim_inbound(10, 60)
        assert sorted(job.message_id for job in claimed) == ["A2", "B1"]
        [row] = await store.claim_outbound(10, 60, now())
        assert row.payload == {"body": "r"}
        assert (row.attempts, row.in_doubt_since) == (1, datetime(2024, 5, 1, 12, tzinfo=UTC))
    finally:
        await store.close()


async def test_naive_datetimes_are_refused(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="timezone"):
        await store.add_inbound("SM1", "A", {}, datetime(2024, 5, 1, 12, 0))
    assert await store.pending_inbound_count() == 0


def test_an_unknown_synchronous_mode_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(path, synchronous="SOMETIMES")


async def test_opt_outs_answered_from_memory_follow_every_change(path: Path) -> None:
    store = SQLiteStore(path)
    await store.open()
    try:
        assert not await store.is_opted_out("+15550001111", "+15552223333")  # now cached
        await store.set_opted_out("+15550001111", "+15552223333", True, "STOP")
        assert await store.is_opted_out("+15550001111", "+15552223333")
        await store.set_opted_out("+15550001111", "+15552223333", False, "START")
        assert not await store.is_opted_out("+15550001111", "+15552223333")
        await store.set_opted_out("+15550001111", "+15552223333", True, "STOP")
    finally:
        await store.close()
    reopened = SQLiteStore(path)
    await reopened.open()
    try:
        assert await reopened.is_opted_out("+15550001111", "+15552223333")  # from the file
    finally:
        await reopened.close()


def test_the_opt_out_cache_keeps_no_read_older_than_a_write() -> None:
    cache = OptOutCache(size=2)
    started = cache.version  # a read goes to the writer and waits...
    cache.written("ours", "person", True)  # ...while a STOP commits
    cache.read("ours", "person", False, as_of=started)  # what the read saw before it
    assert cache.get("ours", "person") is True

    cache.read("ours", "other", False, as_of=cache.version)
    cache.read("ours", "third", True, as_of=cache.version)  # the least recently used goes
    assert cache.get("ours", "person") is None
    assert (cache.get("ours", "other"), cache.get("ours", "third")) == (False, True)


def test_a_read_the_loop_connection_cannot_do_is_handed_to_the_writer(path: Path) -> None:
    sqlite3.connect(path).close()
    reader = LoopReader()
    reader.open(str(path))
    try:

        def busy(db: sqlite3.Connection) -> int:
            raise sqlite3.OperationalError("database is locked")

        def one(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT 1").fetchone()[0])

        assert reader.read(busy) is NOT_READ
        assert reader.read(one) == 1  # and the connection is still good
        elsewhere: list[object] = []
        thread = threading.Thread(target=lambda: elsewhere.append(reader.read(one)))
        thread.start()
        thread.join()
        assert elsewhere == [NOT_READ]  # only the thread that opened it reads on it
    finally:
        reader.close()
    assert reader.read(one) is NOT_READ
