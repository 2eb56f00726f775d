"""One turn: a text through the bot, with its time limit and its error handlers.

    outcome = await run_turn(router, make_context, timeout=60.0)

The handler the router chooses runs under the time limit: an `async def` one is
cancelled when it runs past it, a plain `def` one (in its thread) is abandoned and its
later replies refused (`TurnOver`). Either way, and when the handler raises, its
replies and state changes are dropped and the router's error handler for the error, if
any, runs on a fresh Context (the state as it was before the turn): what it replies is
sent, what it stores is kept. Nothing here touches the store; the dispatcher commits
the outcome.

Two outcomes are not errors: `RetryLater` propagates to the dispatcher (it handles the
text again later), and `RecipientOptedOut` (the person texted STOP) ends the turn with
nothing sent and no error handler, being an expected outcome rather than a bug.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from adapter.bot.context import (
    Context,
    HandlerTimeout,
    RecipientOptedOut,
    RetryLater,
    jsonable_state,
)
from adapter.bot.router import Chosen, ErrorHandler, Router, run_handler


def error_kind(error: BaseException) -> str:
    """How an error is counted (the `error` label of sms_adapter_bot_errors_total)."""
    return "timeout" if isinstance(error, HandlerTimeout) else type(error).__name__


@dataclass
class TurnOutcome:
    matched: bool  # a handler took the text
    ctx: Context  # whose replies are sent: the handler's, or the error handler's
    state: dict[str, Any] | None  # the state to save; None keeps the saved one
    error: Exception | None = None  # what the handler raised (HandlerTimeout if too slow)
    # The error handler that ran to its end, and what one that raised raised.
    handled_by: ErrorHandler | None = None
    error_handler_error: Exception | None = None

    @property
    def opted_out(self) -> bool:
        return isinstance(self.error, RecipientOptedOut)

    @property
    def replies_sent(self) -> bool:
        return self.error is None or self.handled_by is not None


async def run_turn(
    router: Router,
    make_context: Callable[[], Context],
    *,
    timeout: float | None,
) -> TurnOutcome:
    """Run the turn; see the module docstring. `make_context` makes a fresh Context for
    this text each call (one for the handler, one for an error handler)."""
    ctx = make_context()
    chosen: list[Chosen] = []  # filled once the router chose, for the error handler lookup
    try:
        await _within(timeout, _choose_and_run(router, ctx, chosen), ctx, chosen)
        return TurnOutcome(bool(chosen), ctx, jsonable_state(ctx.state))
    except (RetryLater, asyncio.CancelledError):
        raise
    except RecipientOptedOut as error:
        return TurnOutcome(True, make_context(), None, error=error)
    except Exception as error:
        routers = chosen[0].routers if chosen else (router,)
        return await _handle_error(router, routers, error, make_context, timeout)


async def _choose_and_run(router: Router, ctx: Context, chosen: list[Chosen]) -> None:
    found = await router.choose(ctx)
    if found is not None:
        chosen.append(found)
        await run_handler(found.handler, ctx)


async def _within(
    timeout: float | None, work: Awaitable[None], ctx: Context, chosen: list[Chosen]
) -> None:
    try:
        async with asyncio.timeout(timeout) as limit:
            await work
    except TimeoutError:
        if not limit.expired():
            raise  # the handler's own TimeoutError, not ours
        ctx.end_turn()
        name = getattr(chosen[0].handler, "__name__", "handler") if chosen else "a filter"
        raise HandlerTimeout(name, timeout or 0.0) from None
    except asyncio.CancelledError:
        ctx.end_turn()  # shutdown: an abandoned sync handler must not reply any more
        raise


async def _handle_error(
    router: Router,
    routers: tuple[Router, ...],
    error: Exception,
    make_context: Callable[[], Context],
    timeout: float | None,
) -> TurnOutcome:
    handler = router.error_handler_for(error, routers)
    if handler is None:
        return TurnOutcome(True, make_context(), None, error=error)
    fresh = make_context()
    try:
        async with asyncio.timeout(timeout):
            await run_handler(handler, fresh, error)
        state = jsonable_state(fresh.state)
    except Exception as failure:
        fresh.end_turn()
        return TurnOutcome(True, make_context(), None, error=error, error_handler_error=failure)
    return TurnOutcome(True, fresh, state, error=error, handled_by=handler)
