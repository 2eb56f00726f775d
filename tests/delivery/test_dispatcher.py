"""The dispatcher: committed texts → bot turns, one conversation at a time.

The bots are defined here and loaded by spec ("tests.delivery.test_dispatcher:...") the
way the adapter loads any bot. Concurrency is shown with asyncio events that hold a
turn open, never with sleeps or timings.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from adapter.bot.context import Context
from adapter.bot.router import Router
from adapter.delivery.dispatcher import LEASE_SECONDS, Dispatcher
from adapter.delivery.opt_outs import OptOuts
from adapter.runtime.bot_routes import RouteSpec, load_route_table
from adapter.runtime.settings import Settings
from adapter.store.base import InboundJob, StoreError
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.messages import ConversationKey, InboundMessage
from adapter.web.app import create_app
from tests.servers import bound_socket, serve, wait_for

ACCOUNT_SID = "AC" + "2" * 32
AUTH_TOKEN = "durability-dispatcher-token-7d2b"
OURS = "+15005550006"
ALICE = "+15551230001"
BOB = "+15551230002"
THIS_MODULE = __name__


# --- bots --------------------------------------------------------------------------

flaky_router = Router("flaky")


@flaky_router.message()
async def count_or_trip(ctx: Context) -> None:
    """Counts the texts of the conversation in its state; trips over "boom" after
    having replied and changed its state, both of which must then be thrown away."""
    ctx.state["texts"] = [*ctx.state.get("texts", []), ctx.text]
    await ctx.reply(f"that makes {len(ctx.state['texts'])}")
    if ctx.text == "boom":
        raise RuntimeError("the bot tripped")


class Turnstile:
    """Holds each text's turn open until the test lets it finish, and logs the turns."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self._gates: dict[str, asyncio.Event] = {}

    def gate(self, text: str) -> asyncio.Event:
        return self._gates.setdefault(text, asyncio.Event())

    def open(self, *texts: str) -> None:
        for text in texts:
            self.gate(text).set()

    def running(self, text: str) -> bool:
        return f"start {text}" in self.log and f"end {text}" not in self.log


turnstile = Turnstile()
gated_router = Router("gated")


@gated_router.message()
async def take_turn(ctx: Context) -> None:
    turnstile.log.append(f"start {ctx.text}")
    await turnstile.gate(ctx.text).wait()
    turnstile.log.append(f"end {ctx.text}")
    await ctx.reply(f"done {ctx.text}")


handled: list[str] = []
counting_router = Router("counting")


@counting_router.message()
async def count(ctx: Context) -> None:
    handled.append(ctx.activity.id)


@pytest.fixture(autouse=True)
def fresh_bots() -> None:
    global turnstile
    turnstile = Turnstile()
    handled.clear()


# --- helpers -----------------------------------------------------------------------


class WatchedStore(SQLiteStore):
    """Counts how often the dispatcher looked for work, and can hold one look open."""

    claims = 0
    _hold: asyncio.Event | None = None

    def hold_next_claim(self) -> tuple[asyncio.Event, asyncio.Event]:
        """(held, release): `held` is set once the next claim waits; set `release` to
        let it go on."""
        self._holding, self._hold = asyncio.Event(), asyncio.Event()
        return self._holding, self._hold

    async def claim_inbound(self, limit: int, lease_seconds: float) -> list[InboundJob]:
        self.claims += 1
        if self._hold is not None:
            release, self._hold = self._hold, None
            self._holding.set()
            await release.wait()
        return await super().claim_inbound(limit, lease_seconds)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[WatchedStore]:
    store = WatchedStore(tmp_path / "adapter.sqlite3")
    await store.open()
    yield store
    await store.close()


def conversation(person: str) -> str:
    return str(ConversationKey(ours=OURS, person=person))


async def add_texts(store: SQLiteStore, person: str, *bodies: str) -> list[str]:
    """Commit texts as the webhook would; returns their MessageSids."""
    sids = []
    for body in bodies:
        sid = "SM" + uuid.uuid4().hex
        message = InboundMessage(
            message_sid=sid, account_sid=ACCOUNT_SID, from_=person, to=OURS, body=body
        )
        assert await store.add_inbound(
            sid, str(message.conversation), message.to_json(), message.received_at
        )
        sids.append(sid)
    return sids


def dispatcher_for(
    store: SQLiteStore, bot: str, *, concurrency: int = 4, poll_interval: float = 0.01
) -> Dispatcher:
    return Dispatcher(
        store,
        load_route_table([RouteSpec("*", f"{THIS_MODULE}:{bot}")]),
        concurrency=concurrency,
        opt_outs=OptOuts(store),
        on_replies_committed=lambda: None,
        poll_interval=poll_interval,
    )


async def pending_texts(store: SQLiteStore, count: int) -> bool:
    return await store.pending_inbound_count() == count


async def all_handled(store: SQLiteStore) -> bool:
    return await pending_texts(store, 0)


async def replies_to(store: SQLiteStore, person: str) -> list[str]:
    return [
        str(record.payload["body"])
        for record in await store.list_outbound()
        if record.conversation == conversation(person)
    ]


async def run_until_handled(dispatcher: Dispatcher, store: SQLiteStore) -> None:
    dispatcher.start()
    try:
        await wait_for(lambda: all_handled(store))
    finally:
        await dispatcher.stop(timeout=5)


def starts_and_ends(log: Iterable[str], prefix: str) -> list[str]:
    return [entry for entry in log if entry.split()[1].startswith(prefix)]


# --- the tests -----------------------------------------------------------------------


async def test_a_bot_that_raises_is_logged_with_the_activity_id_and_the_conversation_goes_on(
    store: WatchedStore, caplog: pytest.LogCaptureFixture
) -> None:
    _, boom, _ = await add_texts(store, ALICE, "one", "boom", "two")

    await run_until_handled(dispatcher_for(store, "flaky_router"), store)

    [logged] = [r for r in caplog.records if r.name == "adapter.dispatcher"]
    assert logged.levelno == logging.ERROR
    assert boom in logged.getMessage()
    assert logged.exc_info is not None and "the bot tripped" in str(logged.exc_info[1])
    # "two" was handled after the failure, as the second text of the conversation.
    assert await replies_to(store, ALICE) == ["that makes 1", "that makes 2"]


async def test_a_turn_commits_its_state_with_its_replies_and_a_raising_turn_neither(
    store: WatchedStore,
) -> None:
    await add_texts(store, ALICE, "one", "boom", "two")
    await add_texts(store, BOB, "hi")

    await run_until_handled(dispatcher_for(store, "flaky_router"), store)

    assert await store.load_state(conversation(ALICE)) == {"texts": ["one", "two"]}
    assert await store.load_state(conversation(BOB)) == {"texts": ["hi"]}
    # The reply "boom" queued before raising ("that makes 2") was never committed.
    assert await replies_to(store, ALICE) == ["that makes 1", "that makes 2"]
    assert await replies_to(store, BOB) == ["that makes 1"]


async def test_one_conversation_takes_turns_in_order_while_others_run_alongside(
    store: WatchedStore,
) -> None:
    await add_texts(store, ALICE, "A1", "A2", "A3")
    await add_texts(store, BOB, "B1")
    dispatcher = dispatcher_for(store, "gated_router")
    dispatcher.start()
    try:
        # Both conversations are in a turn at once, each held open by its gate.
        await wait_for(lambda: turnstile.running("A1") and turnstile.running("B1"))
        # The dispatcher looks for work three more times while A1 is still open, and
        # must not start A2 in the meantime.
        looked = store.claims
        await wait_for(lambda: store.claims >= looked + 3)
        assert "start A2" not in turnstile.log

        turnstile.open("A1", "B1")
        await wait_for(lambda: turnstile.running("A2"))
        turnstile.open("A2", "A3")
        await wait_for(lambda: all_handled(store))
    finally:
        turnstile.open("A1", "A2", "A3", "B1")
        await dispatcher.stop(timeout=5)

    assert starts_and_ends(turnstile.log, "A") == [
        "start A1",
        "end A1",
        "start A2",
        "end A2",
        "start A3",
        "end A3",
    ]
    assert await replies_to(store, ALICE) == ["done A1", "done A2", "done A3"]


async def test_a_slot_freed_while_the_dispatcher_was_claiming_is_used_at_once(
    store: WatchedStore,
) -> None:
    """A turn that ends while the dispatcher is busy claiming must not be missed: the
    next text would otherwise wait for another turn to end, or for the poll interval
    (here a minute), with a slot free."""
    people = [f"+155512300{n:02d}" for n in range(4)]
    for n, person in enumerate(people):
        await add_texts(store, person, f"T{n}")
    dispatcher = dispatcher_for(store, "gated_router", concurrency=2, poll_interval=60)
    dispatcher.start()
    try:
        await wait_for(lambda: turnstile.running("T0") and turnstile.running("T1"))
        held, release = store.hold_next_claim()
        turnstile.open("T0")  # a slot frees: the dispatcher claims one text
        await wait_for(held.is_set)
        turnstile.open("T1")  # the other slot frees while that claim is under way
        await wait_for(lambda: pending_texts(store, 2))
        release.set()
        await wait_for(lambda: turnstile.running("T2") and turnstile.running("T3"), timeout=5)
    finally:
        turnstile.open("T0", "T1", "T2", "T3")
        await dispatcher.stop(timeout=5)


async def test_twenty_concurrent_deliveries_of_one_text_run_the_bot_once(
    tmp_path: Path,
) -> None:
    sock, base = bound_socket()
    app = create_app(
        Settings(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            public_url=base,
            twilio_base_url=base,
            bots=f"{THIS_MODULE}:counting_router",
            database=str(tmp_path / "adapter.sqlite3"),
        )
    )
    sid = "SM" + "d" * 32
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": ALICE,
        "To": OURS,
        "Body": "only once",
        "NumMedia": "0",
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }
    # Signed by the reference library, as Twilio signs.
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{base}/api/sms", form)
    async with serve(app, sock), httpx.AsyncClient(timeout=10) as client:
        answers = await asyncio.gather(
            *(
                client.post(f"{base}/api/sms", data=form, headers={"X-Twilio-Signature": signature})
                for _ in range(20)
            )
        )
        assert [answer.status_code for answer in answers] == [200] * 20
        await wait_for(lambda: all_handled(app.state.channel.store))

    assert handled == [sid]


class CommitFailsOnce(SQLiteStore):
    """A store whose first commit of a turn's outcome fails, as on a full disk."""

    failures = 0

    async def finish_inbound(self, *args: Any, **kwargs: Any) -> list[int]:
        if self.failures == 0:
            self.failures += 1
            raise StoreError("disk I/O error")
        return await super().finish_inbound(*args, **kwargs)


async def test_a_turn_whose_commit_failed_runs_again_at_once_not_after_the_lease(
    tmp_path: Path,
) -> None:
    store = CommitFailsOnce(tmp_path / "adapter.sqlite3")
    await store.open()
    try:
        await add_texts(store, ALICE, "one", "two")
        started = asyncio.get_running_loop().time()

        # wait_for's 10 s is far below the 300 s lease the text used to wait out.
        await run_until_handled(dispatcher_for(store, "flaky_router"), store)

        assert asyncio.get_running_loop().time() - started < LEASE_SECONDS / 10
        assert store.failures == 1
        # The failed turn left nothing behind: each text counted once, replies in order.
        assert await store.load_state(conversation(ALICE)) == {"texts": ["one", "two"]}
        assert await replies_to(store, ALICE) == ["that makes 1", "that makes 2"]
    finally:
        await store.close()
