"""Router: which handler runs for a text, and which run when a reply's status changes.

    router = Router()

    @router.message(Keyword("HELP"))
    async def help_(ctx: Context) -> None:
        await ctx.reply("Text me anything and I'll echo it.")

    @router.message()
    async def echo(ctx: Context) -> None:
        await ctx.reply(f"You said: {ctx.text}")

Handlers are tried in the order they were registered and the first whose filters all
match handles the text; then the included routers, in the order they were included.
Handlers may be `async def` or plain `def` (run directly, so keep those quick).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from adapter.bot.context import Context
from adapter.bot.filters import And, Filter, require_filters
from adapter.twilio.statuses import MESSAGE_STATUSES

Handler = Callable[[Context], Awaitable[None] | None]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class StatusUpdate:
    """A reply the bot sent changed status (Twilio's status callback or a refresh)."""

    message_sid: str
    status: str
    error_code: int | None
    to: str
    from_: str | None
    body: str
    conversation: str


StatusHandler = Callable[[StatusUpdate], Awaitable[None] | None]
S = TypeVar("S", bound=StatusHandler)


@dataclass(frozen=True)
class _MessageRoute:
    filter: Filter | None  # None matches every text
    handler: Handler


@dataclass(frozen=True)
class _StatusRoute:
    statuses: frozenset[str] | None  # None: every status
    handler: StatusHandler


class Router:
    def __init__(self, name: str | None = None, *, late_texts: bool = False) -> None:
        self.name = name
        # Texts inbound catch-up found older than SMS_ADAPTER_CATCHUP_MAX_AGE are recorded
        # but not handled, so nobody gets an answer hours late; True hands them to this
        # router's handlers too, with ctx.late set.
        self.late_texts = late_texts
        self._message_routes: list[_MessageRoute] = []
        self._status_routes: list[_StatusRoute] = []
        self._included: list[Router] = []

    def __repr__(self) -> str:
        return f"Router({self.name!r})" if self.name else f"<Router at {id(self):#x}>"

    def message(self, *filters: Filter) -> Callable[[H], H]:
        """Register the decorated function for texts that match every filter."""
        if len(filters) == 1 and inspect.isfunction(filters[0]):
            raise TypeError(f"write @router.message() with parentheses above {filters[0].__name__}")
        checked = require_filters(filters, "router.message()")
        combined: Filter | None = None
        if len(checked) == 1:
            combined = checked[0]
        elif checked:
            combined = And(*checked)

        def register(handler: H) -> H:
            _require_callable(handler, "router.message()")
            self._message_routes.append(_MessageRoute(combined, handler))
            return handler

        return register

    def status(self, *statuses: str) -> Callable[[S], S]:
        """Register the decorated function for status changes of the bot's replies,
        only those `statuses` ("delivered", "failed", ...) or, with none, every one."""
        if len(statuses) == 1 and inspect.isfunction(statuses[0]):
            raise TypeError(f"write @router.status() with parentheses above {statuses[0].__name__}")
        wanted = frozenset(s.strip().lower() for s in statuses)
        unknown = sorted(wanted - MESSAGE_STATUSES)
        if unknown:
            raise ValueError(
                f"router.status(): unknown message status {', '.join(map(repr, unknown))}; "
                f"Twilio's statuses are {', '.join(sorted(MESSAGE_STATUSES))}"
            )

        def register(handler: S) -> S:
            _require_callable(handler, "router.status()")
            self._status_routes.append(_StatusRoute(wanted or None, handler))
            return handler

        return register

    def include_router(self, router: Router) -> None:
        """Try `router`'s handlers after this router's own (and after routers included earlier)."""
        if not isinstance(router, Router):
            raise TypeError(f"include_router() takes a Router, got {router!r}")
        if router is self or self in router._descendants():
            raise ValueError(f"including {router!r} in {self!r} would make a loop")
        self._included.append(router)

    def _descendants(self) -> list[Router]:
        found: list[Router] = []
        for child in self._included:
            found += [child, *child._descendants()]
        return found

    async def dispatch(self, ctx: Context) -> bool:
        """Run the first handler that matches the text; False when none did."""
        for route in self._message_routes:
            result = True if route.filter is None else await route.filter(ctx)
            if result:
                ctx.match = result if isinstance(result, re.Match) else None
                await _run(route.handler, ctx)
                return True
        for router in self._included:
            if await router.dispatch(ctx):
                return True
        return False

    async def dispatch_status(self, update: StatusUpdate) -> int:
        """Run every status handler that wants this status, here and in included
        routers; return how many ran. A handler that raises stops the rest."""
        status = update.status.lower()
        ran = 0
        for route in self._status_routes:
            if route.statuses is None or status in route.statuses:
                await _run(route.handler, update)
                ran += 1
        for router in self._included:
            ran += await router.dispatch_status(update)
        return ran


async def _run(handler: Callable[[Any], Awaitable[None] | None], argument: object) -> None:
    result = handler(argument)
    if inspect.isawaitable(result):
        await result


def _require_callable(handler: object, where: str) -> None:
    if not callable(handler):
        raise TypeError(f"{where} decorates a function, got {handler!r}")
