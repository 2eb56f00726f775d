"""What only the PostgreSQL store has: migrations, replicas sharing one queue, LISTEN/NOTIFY,
and riding out lost connections. (The contract suite runs on it too, in test_contract*.)"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from adapter.store.base import ReplyDraft, StoreError
from adapter.store.postgres.schema import MIGRATIONS
from adapter.store.postgres.store import (
    CLAIM_INBOUND,
    LOCK_INBOUND,
    PostgresStore,
    claim_lock_prefix,
)
from tests.postgres_db import admin_connection, fresh_schema
from tests.servers import wait_for

LONG_LEASE = 300.0


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_schema("pgstore") as fresh:
        yield fresh


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def add_texts(store: PostgresStore, *message_ids: str) -> None:
    """Texts whose conversation is the first letter of their id (A1, A2, B1...)."""
    for message_id in message_ids:
        assert await store.add_inbound(message_id, message_id[0], {"id": message_id}, now())


async def claimed(store: PostgresStore, lease: float = LONG_LEASE) -> list[str]:
    return [job.message_id for job in await store.claim_inbound(10, lease)]


# --- migrations --------------------------------------------------------------------------


async def test_replicas_starting_at_once_migrate_the_schema_once(url: str) -> None:
    stores = [PostgresStore(url) for _ in range(5)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        await add_texts(stores[0], "A1")
        assert await stores[4].pending_inbound_count() == 1
    finally:
        await asyncio.gather(*(store.close() for store in stores))

    async with admin_connection() as conn:
        versions = await conn.fetch(
            f"SELECT version FROM {stores[0].schema}.schema_migrations ORDER BY version"
        )
    assert [row["version"] for row in versions] == list(range(1, len(MIGRATIONS) + 1))


async def test_a_schema_from_a_newer_release_is_refused(url: str) -> None:
    async with opened(url) as store:
        schema = store.schema
    async with admin_connection() as conn:
        await conn.execute(f"INSERT INTO {schema}.schema_migrations (version) VALUES (999)")

    with pytest.raises(StoreError, match="newer than this sms-adapter knows"):
        await PostgresStore(url).open()


async def test_an_unreachable_database_says_where_and_never_the_password() -> None:
    store = PostgresStore("postgresql://adapter:s3cr3t-pw@127.0.0.1:1/sms", connect_timeout=3)

    with pytest.raises(StoreError) as raised:
        await store.open()

    message = str(raised.value)
    assert "cannot open the PostgreSQL store postgresql://adapter:***@127.0.0.1:1/sms" in message
    assert "s3cr3t-pw" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://sms:pw-1@db:5432/sms", "postgresql://sms:***@db:5432/sms"),
        ("postgres://db/sms?user=sms&password=pw-1", "postgres://db/sms?user=sms&password=***"),
        ("postgresql://sms@db/sms?schema=fleet", "postgresql://sms@db/sms?schema=fleet"),
    ],
)
def test_the_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert PostgresStore(url).url == shown


@pytest.mark.parametrize("schema", ["bad-name", "1st", "x" * 64, "a;drop"])
def test_a_schema_name_that_is_not_a_plain_identifier_is_refused(schema: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresStore(f"postgresql://db/sms?schema={schema}")


# --- replicas sharing the queue --------------------------------------------------------------


async def test_a_new_replica_leaves_the_live_claims_of_others_alone(url: str) -> None:
    async with opened(url) as first:
        await add_texts(first, "A1", "A2", "B1")
        assert await claimed(first) == ["A1", "B1"]

        async with opened(url) as second:  # open() must not free what `first` holds
            assert await claimed(second) == []
            await first.finish_inbound((await _job_id(first, "A1")), [])
            assert await claimed(second) == ["A2"]


async def test_the_claims_of_a_replica_that_died_are_taken_over_after_its_ttl(url: str) -> None:
    async with opened(url) as survivor:
        await add_texts(survivor, "A1", "A2")
        doomed = _replica_process(url, replica_ttl=1.0)
        try:
            assert doomed.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(doomed.stdout.readline), 30)
            assert line.split() == ["claimed", "A1"]
            # Its lease is long and it is alive: nobody else may take A1, nor overtake it.
            assert await claimed(survivor) == []
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(timeout=30)

        # No sign-off, a 300 s lease: only its missing heartbeat gives A1 back.
        assert await wait_for(lambda: claimed(survivor), timeout=20, interval=0.2) == ["A1"]


async def test_a_text_committed_late_waits_behind_the_newer_one_already_claimed(
    url: str,
) -> None:
    async with opened(url) as store, admin_connection() as other:
        # A1 takes the smaller id but commits after A2: two webhooks on two replicas.
        transaction = other.transaction()
        await transaction.start()
        await other.execute(
            f"""
            INSERT INTO {store.schema}.inbound (message_id, conversation, payload, received_at)
            VALUES ('A1', 'A', '{{"id": "A1"}}', now())
            """
        )
        await add_texts(store, "A2")
        assert await claimed(store) == ["A2"]
        await transaction.commit()

        # A1 is now the oldest pending text, but A2 is still being handled.
        assert await claimed(store) == []
        await store.finish_inbound(await _job_id(store, "A2"), [])
        assert await claimed(store) == ["A1"]


async def test_a_claim_under_way_keeps_other_replicas_out_of_its_conversation(
    url: str,
) -> None:
    """The race the advisory lock is for, played step by step with the store's own SQL:
    replica X claims A2 and has not committed yet when A1 (an older id) commits; replica
    Y, claiming now, sees A1 as the oldest text and no committed claim in A."""
    async with (
        opened(url) as store,
        admin_connection() as x,
        admin_connection() as y,
        admin_connection() as late,
    ):
        for conn in (x, y, late):
            await conn.execute(f"SET search_path TO {store.schema}")
        prefix = claim_lock_prefix(store.schema, "inbound")
        late_insert = late.transaction()
        await late_insert.start()
        await late.execute(
            """
            INSERT INTO inbound (message_id, conversation, payload, received_at)
            VALUES ('A1', 'A', '{"id": "A1"}', now())
            """
        )
        await add_texts(store, "A2")

        async with x.transaction():
            assert [r["conversation"] for r in await x.fetch(LOCK_INBOUND, None, 10, prefix)] == [
                "A"
            ]
            [row] = await x.fetch(CLAIM_INBOUND, None, ["A"], LONG_LEASE, store.replica_id)
            assert row["message_id"] == "A2"
            await late_insert.commit()

            async with y.transaction():
                assert await y.fetch(LOCK_INBOUND, None, 10, prefix) == []

        assert await claimed(store) == []  # X's claim on A2 holds A1 back


async def test_replicas_claiming_at_once_handle_each_text_once_and_in_order(url: str) -> None:
    conversations = "ABCDEF"
    added = [f"{c}{n}" for n in range(1, 9) for c in conversations]
    stores = [PostgresStore(url) for _ in range(3)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        await add_texts(stores[0], *added)
        busy: set[str] = set()
        handled: list[str] = []
        overlaps: list[str] = []

        async def work(store: PostgresStore) -> None:
            while len(handled) < len(added):
                jobs = await store.claim_inbound(2, LONG_LEASE)
                for job in jobs:
                    if job.conversation in busy:
                        overlaps.append(job.message_id)
                    busy.add(job.conversation)
                await asyncio.sleep(0.001)
                for job in jobs:
                    # Marked free before the commit that lets the next text be claimed.
                    busy.discard(job.conversation)
                    handled.append(job.message_id)
                    await store.finish_inbound(job.id, [])

        async with asyncio.timeout(60):
            await asyncio.gather(*(work(store) for store in stores for _ in range(2)))
    finally:
        await asyncio.gather(*(store.close() for store in stores))

    assert overlaps == []
    assert sorted(handled) == sorted(added)
    for conversation in conversations:
        assert [m for m in handled if m[0] == conversation] == [
            m for m in added if m[0] == conversation
        ]


async def test_a_replica_whose_claim_lapsed_may_not_start_sending_that_row(url: str) -> None:
    async with opened(url) as slow, opened(url) as other:
        [row] = await slow.enqueue_outbound([_draft("A")])
        start = now()
        [job] = await slow.claim_outbound(10, 30, start)
        [taken] = await other.claim_outbound(10, 30, start + timedelta(seconds=31))
        assert job.id == taken.id == row

        with pytest.raises(LookupError, match="claimed by another replica"):
            await slow.mark_attempt_started(row, now())
        await other.mark_attempt_started(row, now())


async def test_a_replica_whose_text_was_taken_over_cannot_renew_its_claim(url: str) -> None:
    async with opened(url) as slow, opened(url) as other:
        await add_texts(slow, "A1")
        [job] = await slow.claim_inbound(10, 0.2)
        await asyncio.sleep(0.5)
        assert await claimed(other) == ["A1"]

        # The renewal must not hide that both hold the text: it fails, and the lease
        # stays the other replica's.
        assert not await slow.renew_inbound(job.id, LONG_LEASE)
        assert await other.renew_inbound(job.id, LONG_LEASE)


# --- waking idle replicas -------------------------------------------------------------------


async def test_new_work_wakes_the_workers_of_other_replicas(url: str) -> None:
    woken = {"inbound": asyncio.Event(), "outbound": asyncio.Event()}
    async with opened(url) as writer:
        listener = PostgresStore(url)
        listener.watch_for_work(woken["inbound"].set, woken["outbound"].set)
        await listener.open()
        try:
            await _wait_until_listening(listener)
            for event in woken.values():
                event.clear()  # the wake-up every (re)connection gives

            await add_texts(writer, "A1")
            await asyncio.wait_for(woken["inbound"].wait(), 10)
            assert not woken["outbound"].is_set()

            await writer.enqueue_outbound([_draft("A")])
            await asyncio.wait_for(woken["outbound"].wait(), 10)
        finally:
            await listener.close()


# --- lost connections ------------------------------------------------------------------------


async def test_the_store_recovers_by_itself_when_its_connections_are_killed(url: str) -> None:
    relistened = asyncio.Event()
    store = PostgresStore(url)
    store.watch_for_work(relistened.set, lambda: None)
    await store.open()
    try:
        await _wait_until_listening(store)
        await add_texts(store, "A1")
        relistened.clear()

        async with admin_connection() as admin:
            killed = await admin.fetchval(
                """
                SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE application_name = $1
                """,
                store.application_name,
            )
        assert killed >= 2  # the pool's and the LISTEN connection

        failures: list[BaseException] = []
        async with asyncio.timeout(20):
            while True:
                try:
                    await add_texts(store, "A2")
                    break
                except StoreError as error:  # what the webhook turns into a 503
                    failures.append(error)
                    await asyncio.sleep(0.1)
            await relistened.wait()  # the LISTEN connection is back too
        assert await claimed(store) == ["A1"]
        assert await store.pending_inbound_count() == 2
    finally:
        await store.close()


# --- helpers ----------------------------------------------------------------------------------


def _draft(conversation: str) -> ReplyDraft:
    return ReplyDraft(conversation, {"body": f"to {conversation}"})


async def _job_id(store: PostgresStore, message_id: str) -> int:
    async with admin_connection() as conn:
        job_id = await conn.fetchval(
            f"SELECT id FROM {store.schema}.inbound WHERE message_id = $1", message_id
        )
    assert isinstance(job_id, int)
    return job_id


async def _wait_until_listening(store: PostgresStore) -> None:
    async with admin_connection() as conn:
        await wait_for(
            lambda: conn.fetchval(
                """
                SELECT count(*) FROM pg_stat_activity
                WHERE application_name = $1 AND query LIKE 'LISTEN%'
                """,
                store.application_name,
            )
        )


REPLICA_SCRIPT = """
import asyncio, sys
from adapter.store.postgres.store import PostgresStore

async def main() -> None:
    store = PostgresStore(sys.argv[1], replica_ttl=float(sys.argv[2]))
    await store.open()
    jobs = await store.claim_inbound(10, 300.0)
    print("claimed", *[job.message_id for job in jobs], flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _replica_process(url: str, replica_ttl: float) -> subprocess.Popen[str]:
    """Another replica in its own process, which claims what it can and then hangs on."""
    return subprocess.Popen(
        [sys.executable, "-c", REPLICA_SCRIPT, url, str(replica_ttl)],
        stdout=subprocess.PIPE,
        text=True,
    )
