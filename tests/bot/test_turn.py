"""A turn: the handler under its time limit, then the error handler for what went wrong."""

import asyncio
import threading
import time
from typing import Any

import pytest

from adapter import Context, HandlerTimeout, Keyword, RetryLater, Router, TurnOver
from adapter.bot.context import RecipientOptedOut
from adapter.bot.turn import TurnOutcome, error_kind, run_turn
from adapter.testing import inbound_message


async def turn(
    router: Router,
    text: str,
    *,
    timeout: float | None = 5.0,
    state: dict[str, Any] | None = None,
    opted_out: bool = False,
) -> TurnOutcome:
    message = inbound_message(text)

    def make() -> Context:
        # A fresh state each time, as the dispatcher loads it.
        return Context(message=message, bot_name="t", state=dict(state or {}), opted_out=opted_out)

    return await run_turn(router, make, timeout=timeout)


def bodies(outcome: TurnOutcome) -> list[str]:
    return [reply.body for reply in outcome.ctx.replies] if outcome.replies_sent else []


class Unpaid(Exception):
    pass


def shop() -> Router:
    router = Router("shop")

    @router.message(Keyword("PAY"))
    async def pay(ctx: Context) -> None:
        ctx.state["tries"] = 1
        await ctx.reply("charging your card...")
        raise Unpaid("card declined")

    @router.message(Keyword("CRASH"))
    async def crash(ctx: Context) -> None:
        raise KeyError("missing")

    @router.error(Unpaid)
    async def unpaid(ctx: Context, error: Exception) -> None:
        ctx.state["declined"] = True
        await ctx.reply(f"Payment failed: {error}")

    @router.error()
    async def sorry(ctx: Context, error: Exception) -> None:
        await ctx.reply("Sorry, something went wrong.")

    return router


async def test_the_error_handler_answers_and_the_failed_handlers_replies_are_dropped() -> None:
    outcome = await turn(shop(), "pay", state={"name": "ann"})

    assert bodies(outcome) == ["Payment failed: card declined"]
    assert isinstance(outcome.error, Unpaid)
    # The error handler starts from the state as saved, and what it stores is kept.
    assert outcome.state == {"name": "ann", "declined": True}


async def test_an_error_goes_to_the_first_handler_for_its_type() -> None:
    outcome = await turn(shop(), "crash")
    assert bodies(outcome) == ["Sorry, something went wrong."]
    assert isinstance(outcome.error, KeyError)
    assert error_kind(outcome.error) == "KeyError"


async def test_without_an_error_handler_nothing_is_sent_and_the_error_is_kept() -> None:
    router = Router()

    @router.message()
    async def boom(ctx: Context) -> None:
        await ctx.reply("lost")
        raise RuntimeError("boom")

    outcome = await turn(router, "hi")
    assert bodies(outcome) == []
    assert outcome.state is None  # nothing of the turn is saved
    assert str(outcome.error) == "boom"


async def test_an_included_routers_error_goes_to_its_own_handler_then_up() -> None:
    root, inner, quiet = Router("root"), Router("inner"), Router("quiet")

    @inner.message(Keyword("INNER"))
    async def inner_fails(ctx: Context) -> None:
        raise ValueError("inner")

    @quiet.message(Keyword("QUIET"))
    async def quiet_fails(ctx: Context) -> None:
        raise ValueError("quiet")

    @inner.error()
    async def inner_sorry(ctx: Context, error: Exception) -> None:
        await ctx.reply("inner sorry")

    @root.error()
    async def root_sorry(ctx: Context, error: Exception) -> None:
        await ctx.reply("root sorry")

    root.include_router(inner)
    root.include_router(quiet)
    assert bodies(await turn(root, "inner")) == ["inner sorry"]
    assert bodies(await turn(root, "quiet")) == ["root sorry"]


async def test_an_error_handler_that_raises_sends_nothing() -> None:
    router = Router()

    @router.message()
    async def boom(ctx: Context) -> None:
        raise RuntimeError("first")

    @router.error()
    async def clumsy(ctx: Context, error: Exception) -> None:
        await ctx.reply("half an apology")
        raise LookupError("second")

    outcome = await turn(router, "hi")
    assert bodies(outcome) == []
    assert isinstance(outcome.error_handler_error, LookupError)


async def test_a_sync_error_handler_replies_too() -> None:
    router = Router()

    @router.message()
    def boom(ctx: Context) -> None:
        raise RuntimeError("boom")

    @router.error()
    def sorry(ctx: Context, error: Exception) -> None:
        ctx.reply(f"sorry ({type(error).__name__})")

    assert bodies(await turn(router, "hi")) == ["sorry (RuntimeError)"]


async def test_an_async_handler_past_its_time_limit_is_cancelled() -> None:
    router = Router()
    cancelled = asyncio.Event()

    @router.message()
    async def hang(ctx: Context) -> None:
        await ctx.reply("thinking")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @router.error(HandlerTimeout)
    async def too_slow(ctx: Context, error: Exception) -> None:
        await ctx.reply(f"Too slow: {error}")

    outcome = await turn(router, "hi", timeout=0.1)
    assert cancelled.is_set()
    assert isinstance(outcome.error, HandlerTimeout)
    assert error_kind(outcome.error) == "timeout"
    assert bodies(outcome) == ["Too slow: hang ran past its time limit of 0.1s and was stopped"]


async def test_a_sync_handler_past_its_time_limit_is_abandoned_and_cannot_reply_later() -> None:
    router = Router()
    release = threading.Event()
    late: list[BaseException] = []

    @router.message()
    def block(ctx: Context) -> None:
        release.wait(10)
        try:
            ctx.reply("too late")
        except TurnOver as error:
            late.append(error)

    started = time.perf_counter()
    outcome = await turn(router, "hi", timeout=0.1)
    assert time.perf_counter() - started < 2  # the turn did not wait for the thread
    assert isinstance(outcome.error, HandlerTimeout)
    assert bodies(outcome) == []

    release.set()
    for _ in range(100):
        if late:
            break
        await asyncio.sleep(0.01)
    assert "after the turn ended" in str(late[0])
    assert [r.body for r in outcome.ctx.replies] == []


async def test_a_handlers_own_timeout_error_is_not_a_time_out() -> None:
    router = Router()

    @router.message()
    async def impatient(ctx: Context) -> None:
        await asyncio.wait_for(asyncio.sleep(1), timeout=0.01)

    outcome = await turn(router, "hi", timeout=5)
    assert outcome.error is not None
    assert error_kind(outcome.error) == "TimeoutError"


async def test_a_sync_handler_runs_off_the_event_loop() -> None:
    router = Router()
    threads: list[str] = []

    @router.message()
    def blocking(ctx: Context) -> None:
        threads.append(threading.current_thread().name)
        time.sleep(0.3)
        ctx.reply("done")

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    outcome = await turn(router, "hi")
    ticker.cancel()
    assert bodies(outcome) == ["done"]
    assert threads[0] != threading.current_thread().name
    assert ticks >= 10  # the loop kept running while the handler slept


async def test_retry_later_and_opt_out_are_not_errors_for_error_handlers() -> None:
    router = Router()
    heard: list[Exception] = []

    @router.message(Keyword("LATER"))
    async def later(ctx: Context) -> None:
        raise RetryLater("the shop is closed", delay=60)

    @router.message()
    async def answer(ctx: Context) -> None:
        await ctx.reply("hello")

    @router.error()
    async def record(ctx: Context, error: Exception) -> None:
        heard.append(error)

    with pytest.raises(RetryLater):
        await turn(router, "later")
    outcome = await turn(router, "hi", opted_out=True)
    assert outcome.opted_out and isinstance(outcome.error, RecipientOptedOut)
    assert bodies(outcome) == []
    assert heard == []


def test_error_handlers_are_checked_when_registered() -> None:
    router = Router()
    with pytest.raises(TypeError, match="with parentheses"):

        @router.error  # type: ignore[arg-type]
        async def sorry(ctx: Context, error: Exception) -> None: ...

    with pytest.raises(TypeError, match="takes exception classes"):
        router.error("KeyError")  # type: ignore[arg-type]
