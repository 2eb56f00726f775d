"""The behaviour every Store must have, written against the abstract interface only.

Runs once per backend listed in conftest.BACKENDS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapter.store.base import OutboundRecord, ReplyDraft, Store, StoreError
from tests.store.conftest import Reopen

LONG_LEASE = 60.0


def now() -> datetime:
    return datetime.now(UTC)


async def add_text(store: Store, message_id: str, conversation: str = "A") -> None:
    added = await store.add_inbound(message_id, conversation, {"body": message_id}, now())
    assert added


async def claim_texts(store: Store, limit: int = 10, lease: float = LONG_LEASE) -> list[str]:
    return [job.message_id for job in await store.claim_inbound(limit, lease)]


async def finish_text(
    store: Store, message_id: str, replies: list[ReplyDraft] | None = None
) -> list[int]:
    """Claim `message_id` and finish it; the other texts claimed meanwhile are released."""
    jobs = await store.claim_inbound(100, LONG_LEASE)
    for job in jobs:
        if job.message_id != message_id:
            await store.release_inbound(job.id)
    [job] = [job for job in jobs if job.message_id == message_id]
    return await store.finish_inbound(job.id, replies or [])


async def enqueue(store: Store, *conversations: str) -> list[int]:
    drafts = [ReplyDraft(c, {"body": f"to {c} #{i}"}) for i, c in enumerate(conversations)]
    return await store.enqueue_outbound(drafts)


async def claim_rows(
    store: Store, at: datetime, limit: int = 10, lease: float = LONG_LEASE
) -> list[int]:
    return [job.id for job in await store.claim_outbound(limit, lease, at)]


async def record(store: Store, job_id: int) -> OutboundRecord:
    found = await store.get_outbound(job_id)
    assert found is not None
    return found


async def sent_row(store: Store, sid: str, status: str = "queued") -> int:
    [row] = await enqueue(store, f"conversation of {sid}")
    assert await claim_rows(store, now()) == [row]
    await store.mark_sent(row, sid, status)
    return row


# --- inbound: dedup ------------------------------------------------------------------


async def test_a_message_id_is_stored_once(store: Store) -> None:
    assert await store.add_inbound("SM1", "A", {"body": "first"}, now())
    assert not await store.add_inbound("SM1", "A", {"body": "retry"}, now())

    [job] = await store.claim_inbound(10, LONG_LEASE)
    assert job.payload == {"body": "first"}
    assert await store.pending_inbound_count() == 1


async def test_concurrent_adds_of_one_message_id_store_it_once(store: Store) -> None:
    results = await asyncio.gather(
        *(store.add_inbound("SM1", "A", {"copy": i}, now()) for i in range(50))
    )

    assert results.count(True) == 1
    assert await store.pending_inbound_count() == 1


async def test_a_claimed_text_is_what_was_added(store: Store) -> None:
    payload: dict[str, Any] = {"body": "héllo 👋", "media": [{"url": "u", "n": 1}], "x": None}
    received = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    await store.add_inbound("SM1", "+15550001|+15550002", payload, received)

    [job] = await store.claim_inbound(10, LONG_LEASE)

    assert (job.message_id, job.conversation, job.payload) == (
        "SM1",
        "+15550001|+15550002",
        payload,
    )
    assert job.received_at == received
    assert job.received_at.utcoffset() == timedelta(0)


# --- inbound: claims ---------------------------------------------------------------


async def test_texts_of_a_conversation_are_handled_one_at_a_time_in_order(
    store: Store,
) -> None:
    for message_id, conversation in [("A1", "A"), ("A2", "A"), ("B1", "B")]:
        await add_text(store, message_id, conversation)

    first = await store.claim_inbound(10, LONG_LEASE)
    assert [job.message_id for job in first] == ["A1", "B1"]
    assert await claim_texts(store) == []

    await store.finish_inbound(first[0].id, [])
    assert await claim_texts(store) == ["A2"]
    assert await claim_texts(store) == []


async def test_claims_take_the_oldest_conversations_first_up_to_the_limit(store: Store) -> None:
    for message_id in ["B1", "A1", "C1"]:
        await add_text(store, message_id, conversation=message_id[0])

    assert await claim_texts(store, limit=2) == ["B1", "A1"]
    assert await claim_texts(store, limit=2) == ["C1"]


async def test_a_drained_backlog_keeps_every_conversation_in_order(store: Store) -> None:
    added = [f"{c}{n}" for n in range(1, 5) for c in "ABC"]  # A1 B1 C1 A2 B2 ...
    for message_id in added:
        await add_text(store, message_id, conversation=message_id[0])

    handled: list[str] = []
    while jobs := await store.claim_inbound(2, LONG_LEASE):
        assert len({job.conversation for job in jobs}) == len(jobs)
        # Finish only the first: the other conversation stays claimed meanwhile.
        handled.append(jobs[0].message_id)
        await store.finish_inbound(jobs[0].id, [])
        for job in jobs[1:]:
            await store.release_inbound(job.id)

    assert sorted(handled) == sorted(added)
    for conversation in "ABC":
        assert [m for m in handled if m[0] == conversation] == [
            m for m in added if m[0] == conversation
        ]


async def test_a_claim_whose_lease_ran_out_can_be_claimed_again(store: Store) -> None:
    await add_text(store, "A1")
    await add_text(store, "A2")
    assert await claim_texts(store, lease=0.05) == ["A1"]

    await asyncio.sleep(0.3)

    # The same text again, not the next one: order holds across a lost worker.
    assert await claim_texts(store) == ["A1"]


async def test_a_renewed_claim_outlives_its_first_lease(store: Store) -> None:
    await add_text(store, "A1")
    [job] = await store.claim_inbound(10, 0.2)

    assert await store.renew_inbound(job.id, LONG_LEASE)
    await asyncio.sleep(0.4)

    # Still held: neither the text nor the conversation's next one is claimed.
    await add_text(store, "A2")
    assert await claim_texts(store) == []
    await store.finish_inbound(job.id, [])
    assert await claim_texts(store) == ["A2"]


async def test_only_a_claimed_pending_text_is_renewed(store: Store) -> None:
    await add_text(store, "A1")
    await add_text(store, "B1", conversation="B")
    jobs = {job.message_id: job for job in await store.claim_inbound(10, LONG_LEASE)}
    await store.finish_inbound(jobs["A1"].id, [])
    await store.release_inbound(jobs["B1"].id)

    assert not await store.renew_inbound(jobs["A1"].id, LONG_LEASE)
    assert not await store.renew_inbound(jobs["B1"].id, LONG_LEASE)
    assert not await store.renew_inbound(9999, LONG_LEASE)
    # The released text stays claimable: the refused renewal took no lease.
    assert await claim_texts(store) == ["B1"]


async def test_a_released_text_can_be_claimed_again_at_once(store: Store) -> None:
    await add_text(store, "A1")
    [job] = await store.claim_inbound(10, LONG_LEASE)

    await store.release_inbound(job.id)

    assert await claim_texts(store) == ["A1"]


async def test_a_text_released_for_later_waits_and_holds_back_its_conversation(
    store: Store,
) -> None:
    for message_id in ["A1", "A2", "B1", "B2"]:
        await add_text(store, message_id, conversation=message_id[0])
    jobs = {job.message_id: job for job in await store.claim_inbound(10, LONG_LEASE)}
    assert sorted(jobs) == ["A1", "B1"]

    await store.release_inbound(jobs["A1"].id, not_before=now() + timedelta(minutes=5))
    await store.release_inbound(jobs["B1"].id, not_before=now() - timedelta(seconds=1))

    # A1 is not due, and A2 must not overtake it; B1's time has come.
    assert await claim_texts(store) == ["B1"]


async def test_pending_count_includes_claimed_texts(store: Store) -> None:
    assert await store.pending_inbound_count() == 0
    for message_id in ["A1", "A2", "B1"]:
        await add_text(store, message_id, conversation=message_id[0])
    jobs = await store.claim_inbound(10, LONG_LEASE)
    assert await store.pending_inbound_count() == 3

    await store.finish_inbound(next(job.id for job in jobs if job.message_id == "B1"), [])

    assert await store.pending_inbound_count() == 2


# --- inbound: finishing ------------------------------------------------------------


async def test_finishing_adds_the_replies_in_order_and_saves_the_state(store: Store) -> None:
    await add_text(store, "A1")
    [job] = await store.claim_inbound(10, LONG_LEASE)
    replies = [ReplyDraft("A", {"body": "one"}), ReplyDraft("A", {"body": "two"})]

    ids = await store.finish_inbound(job.id, replies, state=("A", {"step": 2}))

    rows = await store.list_outbound()
    assert [row.id for row in rows] == ids
    assert [(row.conversation, row.payload, row.state) for row in rows] == [
        ("A", {"body": "one"}, "pending"),
        ("A", {"body": "two"}, "pending"),
    ]
    assert await store.load_state("A") == {"step": 2}
    assert await store.pending_inbound_count() == 0
    assert await claim_texts(store) == []


async def test_a_text_whose_bot_raised_is_done_and_keeps_its_replies(store: Store) -> None:
    await add_text(store, "A1")
    [job] = await store.claim_inbound(10, LONG_LEASE)

    await store.finish_inbound(job.id, [ReplyDraft("A", {"body": "sorry"})], error="boom")

    assert await claim_texts(store) == []
    assert await store.pending_inbound_count() == 0
    assert [row.payload for row in await store.list_outbound()] == [{"body": "sorry"}]


@pytest.mark.parametrize(
    ("replies", "state"),
    [
        pytest.param(
            [ReplyDraft("A", {"body": "ok"}), ReplyDraft("A", {"body": object()})],
            ("A", {"step": 1}),
            id="reply-not-json",
        ),
        pytest.param(
            [ReplyDraft("A", {"body": "ok"})], ("A", {"seen": {1, 2}}), id="state-not-json"
        ),
    ],
)
async def test_a_finish_that_fails_changes_nothing(
    store: Store, replies: list[ReplyDraft], state: tuple[str, dict[str, Any]]
) -> None:
    await add_text(store, "A1")
    [job] = await store.claim_inbound(10, LONG_LEASE)

    with pytest.raises((TypeError, ValueError)):
        await store.finish_inbound(job.id, replies, state=state)

    assert await store.list_outbound() == []
    assert await store.load_state("A") == {}
    assert await store.pending_inbound_count() == 1
    # Still finishable: the failure left the text as it was.
    assert len(await store.finish_inbound(job.id, [ReplyDraft("A", {"body": "ok"})])) == 1


async def test_finishing_a_text_twice_does_not_send_its_replies_twice(store: Store) -> None:
    await add_text(store, "A1")
    [job] = await store.claim_inbound(10, LONG_LEASE)
    await store.finish_inbound(job.id, [ReplyDraft("A", {"body": "hi"})])

    with pytest.raises(LookupError):
        await store.finish_inbound(job.id, [ReplyDraft("A", {"body": "hi"})])

    assert len(await store.list_outbound()) == 1


async def test_finishing_an_unknown_text_raises_lookup_error(store: Store) -> None:
    with pytest.raises(LookupError):
        await store.finish_inbound(12345, [ReplyDraft("A", {"body": "hi"})])
    assert await store.list_outbound() == []


# --- conversation state --------------------------------------------------------------


async def test_state_round_trips_and_the_last_save_wins(store: Store) -> None:
    assert await store.load_state("A") == {}
    first: dict[str, Any] = {"name": "Zoë", "items": [1, 2.5, None, {"deep": True}]}
    for message_id, state in [("A1", first), ("A2", {"name": "Ann"})]:
        await add_text(store, message_id)
        [job] = await store.claim_inbound(10, LONG_LEASE)
        await store.finish_inbound(job.id, [], state=("A", state))
        assert await store.load_state("A") == state

    assert await store.load_state("B") == {}


async def test_state_saved_outside_a_turn_round_trips_and_survives_a_restart(
    store: Store, reopen: Reopen
) -> None:
    await store.save_state("records|A", {"ours": "+15550001111", "answered": False})
    await store.save_state("records|A", {"ours": "+15550002222", "answered": True})
    await store.save_state("records|B", {"ours": "+15550003333"})

    store = await reopen(store)

    assert await store.load_state("records|A") == {"ours": "+15550002222", "answered": True}
    assert await store.load_state("records|B") == {"ours": "+15550003333"}
    assert await store.load_state("A") == {}


# --- outbox: claims ----------------------------------------------------------------


async def test_enqueued_rows_start_pending_and_not_in_doubt(store: Store) -> None:
    before = now()
    ids = await enqueue(store, "A", "B")

    assert ids == sorted(ids)
    first = await record(store, ids[0])
    assert (first.conversation, first.payload, first.state, first.attempts) == (
        "A",
        {"body": "to A #0"},
        "pending",
        0,
    )
    assert (first.message_sid, first.twilio_status, first.error_code) == (None, None, None)
    assert first.created_at >= before - timedelta(seconds=5)
    assert first.created_at.utcoffset() == timedelta(0)
    jobs = await store.claim_outbound(10, LONG_LEASE, now())
    assert [(job.id, job.attempts, job.in_doubt_since) for job in jobs] == [
        (ids[0], 0, None),
        (ids[1], 0, None),
    ]
    assert await store.get_outbound(max(ids) + 1000) is None


async def test_rows_of_a_conversation_are_sent_one_at_a_time_in_order(store: Store) -> None:
    a1, a2, b1 = await enqueue(store, "A", "A", "B")

    assert await claim_rows(store, now()) == [a1, b1]
    assert await claim_rows(store, now()) == []

    await store.mark_sent(a1, "SMa1", "queued")
    assert await claim_rows(store, now()) == [a2]


async def test_outbox_claims_respect_the_limit(store: Store) -> None:
    a1, b1, c1 = await enqueue(store, "A", "B", "C")

    assert await claim_rows(store, now(), limit=2) == [a1, b1]
    assert await claim_rows(store, now(), limit=2) == [c1]


async def test_an_outbound_claim_whose_lease_ran_out_can_be_claimed_again(
    store: Store,
) -> None:
    a1, _a2 = await enqueue(store, "A", "A")
    start = now()
    assert await claim_rows(store, start, lease=30) == [a1]

    assert await claim_rows(store, start + timedelta(seconds=10)) == []
    assert await claim_rows(store, start + timedelta(seconds=31)) == [a1]


async def test_a_released_row_can_be_claimed_again_at_once(store: Store) -> None:
    [a1] = await enqueue(store, "A")
    assert await claim_rows(store, now()) == [a1]

    await store.release_outbound(a1)

    [job] = await store.claim_outbound(10, LONG_LEASE, now())
    assert (job.id, job.attempts) == (a1, 0)


async def test_a_row_waiting_for_a_retry_holds_back_its_conversation(store: Store) -> None:
    a1, _a2, b1 = await enqueue(store, "A", "A", "B")
    start = now()
    assert await claim_rows(store, start) == [a1, b1]
    await store.mark_attempt_started(a1, start)
    await store.schedule_retry(a1, start + timedelta(seconds=60), "HTTP 503", in_doubt=False)
    await store.mark_sent(b1, "SMb1", "queued")

    assert await claim_rows(store, start + timedelta(seconds=59)) == []

    [job] = await store.claim_outbound(10, LONG_LEASE, start + timedelta(seconds=60))
    assert (job.id, job.attempts) == (a1, 1)
    assert (await record(store, a1)).error_message == "HTTP 503"


@pytest.mark.parametrize(("dead", "state"), [(False, "failed"), (True, "dead")])
async def test_a_row_given_up_on_no_longer_holds_back_its_conversation(
    store: Store, dead: bool, state: str
) -> None:
    a1, a2 = await enqueue(store, "A", "A")
    assert await claim_rows(store, now()) == [a1]

    await store.mark_failed(a1, 21211, "invalid To number", dead=dead)

    assert await claim_rows(store, now()) == [a2]
    given_up = await record(store, a1)
    assert (given_up.state, given_up.error_code, given_up.error_message) == (
        state,
        21211,
        "invalid To number",
    )


# --- outbox: attempts in doubt -------------------------------------------------------


async def test_an_attempt_without_an_outcome_leaves_the_row_in_doubt(store: Store) -> None:
    [a1] = await enqueue(store, "A")
    t0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=1)
    later = now() + timedelta(hours=1)

    assert await claim_rows(store, now()) == [a1]
    await store.mark_attempt_started(a1, t0)
    await store.schedule_retry(a1, t1, "timeout", in_doubt=True)
    [job] = await store.claim_outbound(10, LONG_LEASE, later)
    assert (job.attempts, job.in_doubt_since) == (1, t0)

    # A second uncertain attempt keeps the first time: the doubt began then.
    await store.mark_attempt_started(a1, t1)
    await store.schedule_retry(a1, t1, "timeout", in_doubt=True)
    [job] = await store.claim_outbound(10, LONG_LEASE, later)
    assert (job.attempts, job.in_doubt_since) == (2, t0)

    await store.schedule_retry(a1, t1, "HTTP 429", in_doubt=False)
    [job] = await store.claim_outbound(10, LONG_LEASE, later)
    assert (job.attempts, job.in_doubt_since) == (2, None)


async def test_a_row_in_doubt_stays_in_doubt_after_a_restart(store: Store, reopen: Reopen) -> None:
    [a1] = await enqueue(store, "A")
    t0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert await claim_rows(store, now()) == [a1]
    await store.mark_attempt_started(a1, t0)

    # No outcome recorded: the process went away mid-request.
    store = await reopen(store)

    # Its lease is gone with it: the row is claimable at once, in doubt.
    [job] = await store.claim_outbound(10, LONG_LEASE, now())
    assert (job.id, job.attempts, job.in_doubt_since) == (a1, 1, t0)


# --- outbox: outcomes ----------------------------------------------------------------


async def test_a_sent_row_keeps_its_sid_and_is_not_sent_again(store: Store) -> None:
    [a1] = await enqueue(store, "A")
    assert await claim_rows(store, now()) == [a1]
    await store.mark_attempt_started(a1, now())

    await store.mark_sent(a1, "SM0123", "queued")

    sent = await record(store, a1)
    assert (sent.state, sent.message_sid, sent.twilio_status, sent.attempts) == (
        "sent",
        "SM0123",
        "queued",
        1,
    )
    assert await claim_rows(store, now() + timedelta(days=1)) == []


OUTCOMES: dict[str, Callable[[Store, int], Awaitable[None]]] = {
    "mark_attempt_started": lambda s, row: s.mark_attempt_started(row, now()),
    "mark_sent": lambda s, row: s.mark_sent(row, "SMother", "queued"),
    "schedule_retry": lambda s, row: s.schedule_retry(row, now(), "timeout", in_doubt=True),
    "mark_failed": lambda s, row: s.mark_failed(row, None, "gave up", dead=True),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
async def test_a_row_that_is_done_cannot_be_reopened(store: Store, outcome: str) -> None:
    row = await sent_row(store, "SM1")

    with pytest.raises(LookupError):
        await OUTCOMES[outcome](store, row)
    with pytest.raises(LookupError):
        await OUTCOMES[outcome](store, row + 1000)

    after = await record(store, row)
    assert (after.state, after.message_sid) == ("sent", "SM1")


# --- delivery statuses ---------------------------------------------------------------


# (status given to mark_sent, statuses Twilio reports, the status kept after each)
STATUS_STORIES = [
    ("queued", ["sent", "delivered"], ["sent", "delivered"]),
    ("queued", ["delivered", "sent"], ["delivered", "delivered"]),
    ("queued", ["sending", "queued"], ["sending", "sending"]),
    ("sent", ["failed", "delivered"], ["failed", "failed"]),
    ("accepted", ["queued", "undelivered", "sent"], ["queued", "undelivered", "undelivered"]),
    ("delivered", ["read"], ["read"]),
    ("sent", ["sent"], ["sent"]),
    ("queued", ["no-such-status"], ["queued"]),
]


@pytest.mark.parametrize(("initial", "reported", "kept"), STATUS_STORIES)
async def test_statuses_only_move_forward(
    store: Store, initial: str, reported: list[str], kept: list[str]
) -> None:
    row = await sent_row(store, "SM1", initial)

    returned = []
    for status in reported:
        change = await store.update_status("SM1", status, None)
        assert change is not None and change.record.id == row
        returned.append(change.record.twilio_status)

    assert returned == kept
    assert (await record(store, row)).twilio_status == kept[-1]


async def test_a_status_keeps_twilios_error_code(store: Store) -> None:
    await sent_row(store, "SM1")

    change = await store.update_status("SM1", "undelivered", 30003)

    assert change is not None
    updated = change.record
    assert (updated.state, updated.twilio_status, updated.error_code) == (
        "sent",
        "undelivered",
        30003,
    )


async def test_an_open_store_takes_a_probe_write_and_a_closed_one_says_it_cannot(
    store: Store,
) -> None:
    await store.check_writable()
    await store.check_writable()  # again: the probe rewrites its row, never piles up

    await store.close()
    with pytest.raises(StoreError):
        await store.check_writable()
    await store.open()  # the fixture closes it


async def test_an_open_stores_claims_are_safe_for_a_while_or_for_ever(store: Store) -> None:
    safe_until = store.claims_safe_until()
    # None: no other process shares the claims. Else: the heartbeat just renewed at open.
    assert safe_until is None or safe_until > asyncio.get_running_loop().time() + 1


async def test_a_status_counts_as_changed_only_when_it_moves_the_row(store: Store) -> None:
    await sent_row(store, "SM1", "queued")

    changes = []
    for status in ["sent", "sent", "delivered", "sent", "delivered", "queued"]:
        change = await store.update_status("SM1", status, None)
        assert change is not None
        changes.append(change.changed)

    # A replayed callback, or a late one that would move backwards, changes nothing.
    assert changes == [True, False, True, False, False, False]


async def test_a_status_for_a_sid_that_is_not_ours_is_ignored(store: Store) -> None:
    row = await sent_row(store, "SM1")

    assert await store.update_status("SMunknown", "delivered", None) is None
    assert (await record(store, row)).twilio_status == "queued"


async def test_unfinished_sent_lists_rows_still_waiting_for_a_final_status(
    store: Store,
) -> None:
    queued = await sent_row(store, "SM1", "queued")
    sending = await sent_row(store, "SM2", "sent")
    await sent_row(store, "SM3", "sent")
    await store.update_status("SM3", "delivered", None)
    # Found delivered at Twilio by the lookup of a send that was in doubt.
    await sent_row(store, "SM4", "delivered")
    await enqueue(store, "unsent")

    waiting = await store.unfinished_sent(now() + timedelta(minutes=1), 10)

    assert sorted(row.id for row in waiting) == [queued, sending]
    assert await store.unfinished_sent(now() - timedelta(hours=1), 10) == []
    assert len(await store.unfinished_sent(now() + timedelta(minutes=1), 1)) == 1


# --- operators' views ----------------------------------------------------------------


async def test_outbox_stats_count_what_is_left_to_send(store: Store) -> None:
    empty = await store.outbox_stats()
    assert (empty.depth, empty.oldest_pending_at) == (0, None)
    a1, b1, c1 = await enqueue(store, "A", "B", "C")
    [c2] = await enqueue(store, "C")
    assert await claim_rows(store, now()) == [a1, b1, c1]
    await store.mark_sent(a1, "SMa1", "queued")
    await store.mark_failed(b1, None, "gave up", dead=True)

    stats = await store.outbox_stats()

    assert stats.depth == 2  # c1 (claimed) and c2
    assert stats.oldest_pending_at == (await record(store, c1)).created_at
    assert stats.oldest_pending_at <= (await record(store, c2)).created_at


async def test_list_outbound_filters_by_state_in_id_order(store: Store) -> None:
    ids = await enqueue(store, "A", "B", "C", "D")
    assert await claim_rows(store, now()) == ids
    await store.mark_failed(ids[3], None, "too old", dead=True)
    await store.mark_failed(ids[0], None, "out of attempts", dead=True)
    await store.mark_failed(ids[1], 21610, "unsubscribed", dead=False)

    dead = await store.list_outbound(state="dead")

    assert [(row.id, row.error_message) for row in dead] == [
        (ids[0], "out of attempts"),
        (ids[3], "too old"),
    ]
    assert [row.id for row in await store.list_outbound()] == ids
    assert [row.id for row in await store.list_outbound(limit=2)] == ids[:2]
    assert await store.list_outbound(state="sent") == []


async def test_list_outbound_filters_by_twilio_status_for_scheduled_messages(
    store: Store,
) -> None:
    scheduled = await sent_row(store, "SM1", "scheduled")
    await sent_row(store, "SM2", "queued")
    later = await sent_row(store, "SM3", "scheduled")
    canceled = await sent_row(store, "SM4", "scheduled")
    await store.update_status("SM4", "canceled", None)

    listed = await store.list_outbound(twilio_status="scheduled")

    assert [row.id for row in listed] == [scheduled, later]
    assert [
        row.id for row in await store.list_outbound(state="sent", twilio_status="canceled")
    ] == [canceled]
    assert await store.list_outbound(state="dead", twilio_status="scheduled") == []


# --- durability ----------------------------------------------------------------------


async def test_everything_survives_a_restart(store: Store, reopen: Reopen) -> None:
    sent = await sent_row(store, "SM1")
    await store.update_status("SM1", "delivered", None)
    [dead] = await enqueue(store, "D")
    assert await claim_rows(store, now()) == [dead]
    await store.mark_failed(dead, None, "out of attempts", dead=True)
    await add_text(store, "A1")
    await add_text(store, "B1", "B")
    [reply] = await finish_text(store, "A1", [ReplyDraft("A", {"body": "r1"})])
    [job] = await store.claim_inbound(10, LONG_LEASE)
    await store.finish_inbound(job.id, [], state=("B", {"step": 1}))
    await add_text(store, "B2", "B")
    [proactive] = await enqueue(store, "C")
    rows_before = await store.list_outbound()
    stats_before = await store.outbox_stats()

    store = await reopen(store)

    assert await store.list_outbound() == rows_before
    assert await store.outbox_stats() == stats_before
    assert [(r.id, r.state) for r in rows_before] == [
        (sent, "sent"),
        (dead, "dead"),
        (reply, "pending"),
        (proactive, "pending"),
    ]
    assert rows_before[0].twilio_status == "delivered"
    assert await store.load_state("B") == {"step": 1}
    assert await store.pending_inbound_count() == 1
    assert not await store.add_inbound("A1", "A", {"body": "Twilio retried"}, now())
    assert await claim_texts(store) == ["B2"]
    assert await claim_rows(store, now()) == [reply, proactive]


async def test_an_outbox_row_is_found_by_its_message_sid(store: Store) -> None:
    [first, second] = await enqueue(store, "A", "B")
    at = now()
    claimed = await store.claim_outbound(10, LONG_LEASE, at)
    assert {job.id for job in claimed} == {first, second}
    await store.mark_attempt_started(first, at)
    await store.mark_sent(first, "SM" + "1" * 32, "queued")

    found = await store.find_outbound_by_sid("SM" + "1" * 32)
    assert found is not None and found.id == first
    assert await store.find_outbound_by_sid("SM" + "2" * 32) is None


# --- edges the mutation runs found unpinned ------------------------------------------


async def test_releasing_a_finished_text_does_not_bring_it_back(store: Store) -> None:
    await add_text(store, "A1")
    [job] = await store.claim_inbound(10, LONG_LEASE)
    await store.finish_inbound(job.id, [])

    await store.release_inbound(job.id)
    await store.release_inbound(987654)  # unknown: nothing to do, no error

    assert await claim_texts(store) == []
    assert await store.pending_inbound_count() == 0


async def test_releasing_a_row_given_up_on_does_not_send_it(store: Store) -> None:
    [a1] = await enqueue(store, "A")
    assert await claim_rows(store, now()) == [a1]
    await store.mark_failed(a1, None, "gave up", dead=True)

    await store.release_outbound(a1)
    await store.release_outbound(987654)  # unknown: nothing to do, no error

    assert await claim_rows(store, now() + timedelta(days=1)) == []
    assert (await record(store, a1)).state == "dead"


async def test_a_limit_of_zero_lists_nothing(store: Store) -> None:
    await sent_row(store, "SM1")
    assert await store.list_outbound(limit=0) == []
    assert await store.unfinished_sent(now() + timedelta(days=1), 0) == []


async def test_lists_show_a_hundred_rows_unless_asked_for_more(store: Store) -> None:
    ids = await enqueue(store, *[f"C{i}" for i in range(101)])
    assert [row.id for row in await store.list_outbound()] == ids[:100]


async def test_a_sent_row_shows_no_error_from_an_earlier_attempt(store: Store) -> None:
    [a1] = await enqueue(store, "A")
    assert await claim_rows(store, now()) == [a1]
    await store.mark_attempt_started(a1, now())
    await store.schedule_retry(a1, now(), "timeout", in_doubt=True)
    assert (await record(store, a1)).error_message == "timeout"
    assert await claim_rows(store, now() + timedelta(seconds=1)) == [a1]

    await store.mark_sent(a1, "SMa1", "queued")

    sent = await record(store, a1)
    assert (sent.state, sent.error_code, sent.error_message) == ("sent", None, None)


async def test_the_oldest_pending_reply_ignores_older_replies_already_sent(store: Store) -> None:
    [old] = await enqueue(store, "A")
    assert await claim_rows(store, now()) == [old]
    await store.mark_sent(old, "SMold", "queued")
    await asyncio.sleep(0.01)
    [young] = await enqueue(store, "B")

    stats = await store.outbox_stats()

    assert stats.depth == 1
    assert stats.oldest_pending_at == (await record(store, young)).created_at


async def test_a_status_update_is_stamped_with_its_time_for_the_refresh(store: Store) -> None:
    await sent_row(store, "SM1")
    await store.update_status("SM1", "sent", None)
    await sent_row(store, "SM2")
    await store.update_status("SM2", "sent", None)
    await store.update_status("SM2", "sent", None)  # the same status again: confirmed

    stale = await store.unfinished_sent(now() + timedelta(seconds=1), 10)
    fresh = await store.unfinished_sent(now() - timedelta(minutes=1), 10)

    assert sorted(row.message_sid or "" for row in stale) == ["SM1", "SM2"]
    assert fresh == []
