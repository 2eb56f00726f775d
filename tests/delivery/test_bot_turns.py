"""The dispatcher's side of a bot's turn: error replies, the apology, the error counter,
the time limit, and the lease renewed while a slow handler runs (so a text is handled
once, never twice at once, by this process or another replica)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapter import Context, Keyword, Router
from adapter.delivery.dispatcher import Dispatcher
from adapter.delivery.events import ChannelEvents
from adapter.delivery.opt_outs import OptOuts
from adapter.runtime.bot_routes import RouteSpec, load_route_table
from adapter.runtime.metrics import Metrics
from adapter.store.base import Store
from adapter.store.postgres.store import PostgresStore
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.messages import InboundMessage
from tests.postgres_db import fresh_schema
from tests.servers import wait_for

OURS = "+15005550006"
PERSON = "+15551230000"
THIS_MODULE = __name__

# --- bots ---------------------------------------------------------------------------

careful = Router("careful")


@careful.message(Keyword("BOOM"))
async def boom(ctx: Context) -> None:
    await ctx.reply("this is dropped")
    raise ZeroDivisionError("division by zero")


@careful.message(Keyword("HANG"))
async def hang(ctx: Context) -> None:
    await asyncio.sleep(30)


@careful.message(Keyword("SLEEP"))
def sleep(ctx: Context) -> None:
    time.sleep(1)
    ctx.reply("this is discarded")


@careful.error()
async def sorry(ctx: Context, error: Exception) -> None:
    await ctx.reply(f"Sorry! ({type(error).__name__})")


careless = Router("careless")


@careless.message()
async def trip(ctx: Context) -> None:
    await ctx.reply("this is dropped")
    raise ValueError("tripped")


class Slow:
    """Counts the runs of each text and how many run at once."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.running = 0
        self.most_at_once = 0


slow_state = Slow()
slow = Router("slow")


@slow.message()
async def take_long(ctx: Context) -> None:
    slow_state.runs.append(ctx.text)
    slow_state.running += 1
    slow_state.most_at_once = max(slow_state.most_at_once, slow_state.running)
    try:
        await asyncio.sleep(1.5)  # five leases of 0.3 s
    finally:
        slow_state.running -= 1
    await ctx.reply(f"done: {ctx.text}")


# --- helpers ------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "adapter.sqlite3")
    await store.open()
    yield store
    await store.close()


def dispatcher_for(
    store: Store,
    bot: str,
    *,
    events: ChannelEvents | None = None,
    timeout: float | None = 5.0,
    error_reply: str | None = None,
    lease_seconds: float = 300.0,
) -> Dispatcher:
    return Dispatcher(
        store,
        load_route_table([RouteSpec("*", f"{THIS_MODULE}:{bot}")]),
        concurrency=4,
        opt_outs=OptOuts(store),
        on_replies_committed=lambda: None,
        poll_interval=0.02,
        events=events or ChannelEvents(),
        handler_timeout=timeout,
        error_reply=error_reply,
        lease_seconds=lease_seconds,
    )


async def text(store: Store, body: str) -> None:
    sid = "SM" + uuid.uuid4().hex
    message = InboundMessage(
        message_sid=sid, account_sid="AC" + "1" * 32, from_=PERSON, to=OURS, body=body
    )
    assert await store.add_inbound(
        sid, str(message.conversation), message.to_json(), message.received_at
    )


async def handle_all(store: Store, *dispatchers: Dispatcher) -> None:
    for dispatcher in dispatchers:
        dispatcher.start()
    try:
        await wait_for(lambda: _none_pending(store), timeout=15)
    finally:
        for dispatcher in dispatchers:
            await dispatcher.stop(timeout=5)


async def _none_pending(store: Store) -> bool:
    return await store.pending_inbound_count() == 0


async def replies(store: Store) -> list[str]:
    return [str(record.payload["body"]) for record in await store.list_outbound()]


def errors_counted(metrics: Metrics, bot: str, error: str) -> float:
    value = metrics.registry.get_sample_value(
        "sms_adapter_bot_errors_total", {"bot": bot, "error": error}
    )
    return value or 0.0


# --- error handlers, the apology, the counter -----------------------------------------


async def test_the_error_handlers_reply_is_sent_and_the_error_counted(store: SQLiteStore) -> None:
    metrics = Metrics()
    await text(store, "boom")
    await handle_all(store, dispatcher_for(store, "careful", events=metrics))

    assert await replies(store) == ["Sorry! (ZeroDivisionError)"]
    assert errors_counted(metrics, f"{THIS_MODULE}:careful", "ZeroDivisionError") == 1


async def test_a_bot_without_an_error_handler_sends_the_configured_apology(
    store: SQLiteStore,
) -> None:
    metrics = Metrics()
    await text(store, "hi")
    await handle_all(
        store,
        dispatcher_for(store, "careless", events=metrics, error_reply="Sorry, try again later."),
    )

    assert await replies(store) == ["Sorry, try again later."]
    assert errors_counted(metrics, f"{THIS_MODULE}:careless", "ValueError") == 1


async def test_without_an_apology_a_failing_bot_sends_nothing(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    await text(store, "hi")
    await handle_all(store, dispatcher_for(store, "careless"))

    assert await replies(store) == []
    [logged] = [r for r in caplog.records if r.exc_info]
    assert "its replies for this text are dropped" in logged.getMessage()


async def test_an_async_handler_past_the_time_limit_is_stopped_counted_and_apologised_for(
    store: SQLiteStore,
) -> None:
    metrics = Metrics()
    await text(store, "hang")
    started = time.perf_counter()
    await handle_all(store, dispatcher_for(store, "careful", events=metrics, timeout=0.2))

    assert time.perf_counter() - started < 10  # not the handler's 30 s
    assert await replies(store) == ["Sorry! (HandlerTimeout)"]
    assert errors_counted(metrics, f"{THIS_MODULE}:careful", "timeout") == 1


async def test_a_sync_handler_past_the_time_limit_is_abandoned_and_its_replies_discarded(
    store: SQLiteStore,
) -> None:
    await text(store, "sleep")
    await handle_all(store, dispatcher_for(store, "careful", timeout=0.2))
    await asyncio.sleep(1.2)  # the abandoned thread wakes up and tries to reply

    assert await replies(store) == ["Sorry! (HandlerTimeout)"]


# --- the lease ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def two_replicas(kind: str, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two workers' stores: one SQLite file shared in this process, or two PostgreSQL
    stores (two replicas) on one schema."""
    if kind == "sqlite":
        store = SQLiteStore(tmp_path / "adapter.sqlite3")
        await store.open()
        try:
            yield store, store
        finally:
            await store.close()
        return
    async with fresh_schema("lease") as url:
        first, second = PostgresStore(url), PostgresStore(url)
        await first.open()
        await second.open()
        try:
            yield first, second
        finally:
            await first.close()
            await second.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_text_whose_handler_outlives_its_lease_is_handled_once(
    kind: str, tmp_path: Path
) -> None:
    global slow_state
    slow_state = Slow()
    async with two_replicas(kind, tmp_path) as (first, second):
        await text(first, "take your time")
        # Leases of 0.3 s against a handler of 1.5 s: without renewal, the other worker
        # (and this one) would claim the text again while it runs.
        workers = [dispatcher_for(store, "slow", lease_seconds=0.3) for store in (first, second)]
        await handle_all(first, *workers)

        assert slow_state.runs == ["take your time"]
        assert slow_state.most_at_once == 1
        assert await replies(first) == ["done: take your time"]
