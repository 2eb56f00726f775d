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
Handlers may be `async def` or plain `def`; a plain one runs in a thread of its own, so
blocking calls in it never stall the adapter.

    @router.error()
    async def sorry(ctx: Context, error: Exception) -> None:
        await ctx.reply("Sorry, something went wrong. Please try again.")

    @router.on_startup
    async def open_client() -> None: ...

An error handler hears what a message handler of its router (or of a router included in
it, unless that one has a handler of its own for the error) raised; `@router.error(E)`
only errors of type E. Startup and shutdown hooks run once per process, the included
routers' after the router's own at startup and before them at shutdown.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from adapter.bot.context import Context
from adapter.bot.filters import And, Filter, require_filters
from adapter.bot.threads import run_in_thread
from adapter.twilio.statuses import MESSAGE_STATUSES

Handler = Callable[[Context], Awaitable[None] | None]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class StatusUpdate:
    """A reply the bot sent changed status (Twilio's status callback or a refresh)."""

    message_sid: str | None  # None: the reply never reached Twilio (dead-lettered)
    status: str
    error_code: int | None
    to: str
    from_: str | None
    body: str
    conversation: str
    # Why, when the adapter itself gave up on the reply (e.g. its validity period passed).
    reason: str | None = None


StatusHandler = Callable[[StatusUpdate], Awaitable[None] | None]
S = TypeVar("S", bound=StatusHandler)
ErrorHandler = Callable[[Context, Exception], Awaitable[None] | None]
E = TypeVar("E", bound=ErrorHandler)
Hook = Callable[[], Awaitable[None] | None]
K = TypeVar("K", bound=Hook)


@dataclass(frozen=True)
class _MessageRoute:
    filter: Filter | None  # None matches every text
    handler: Handler


@dataclass(frozen=True)
class _ErrorRoute:
    errors: tuple[type[Exception], ...]
    handler: ErrorHandler


@dataclass(frozen=True)
class Chosen:
    """The handler that takes a text, and the routers from the root down to its own
    (where its error handlers are looked for, innermost first)."""

    handler: Handler
    routers: tuple[Router, ...]


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
        self._error_routes: list[_ErrorRoute] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []

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

    def error(self, *errors: type[Exception]) -> Callable[[E], E]:
        """Register the decorated `(ctx, error)` function for errors the message handlers
        raise (only those of the given types, or with none, every one), their time-outs
        included (`adapter.HandlerTimeout`). What the failed handler replied is dropped;
        what the error handler replies is sent."""
        if len(errors) == 1 and inspect.isfunction(errors[0]):
            raise TypeError(f"write @router.error() with parentheses above {errors[0].__name__}")
        for error in errors:
            if not (isinstance(error, type) and issubclass(error, Exception)):
                raise TypeError(f"router.error() takes exception classes, got {error!r}")

        def register(handler: E) -> E:
            _require_callable(handler, "router.error()")
            self._error_routes.append(_ErrorRoute(errors or (Exception,), handler))
            return handler

        return register

    def on_startup(self, hook: K) -> K:
        """Run `hook()` (sync or async, no arguments) once when the adapter starts, before
        the first text: open a database or an HTTP client here. If it raises, start-up
        stops with a message naming the bot."""
        _require_callable(hook, "router.on_startup")
        self._startup.append(hook)
        return hook

    def on_shutdown(self, hook: K) -> K:
        """Run `hook()` once when the adapter stops, after the last text was handled."""
        _require_callable(hook, "router.on_shutdown")
        self._shutdown.append(hook)
        return hook

    def startup_hooks(self) -> list[Hook]:
        """This router's startup hooks, then those of the routers it includes (each once)."""
        hooks = [*self._startup]
        for router in self._included:
            hooks += router.startup_hooks()
        return list(dict.fromkeys(hooks))

    def shutdown_hooks(self) -> list[Hook]:
        """The included routers' shutdown hooks first, this router's own last (each once)."""
        hooks: list[Hook] = []
        for router in reversed(self._included):
            hooks += router.shutdown_hooks()
        hooks += reversed(self._shutdown)
        return list(dict.fromkeys(hooks))

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

    async def choose(self, ctx: Context) -> Chosen | None:
        """The first handler whose filters match the text (its Regex match set on `ctx`)."""
        for route in self._message_routes:
            result = True if route.filter is None else await route.filter(ctx)
            if result:
                ctx.set_match(result if isinstance(result, re.Match) else None)
                return Chosen(route.handler, (self,))
        for router in self._included:
            chosen = await router.choose(ctx)
            if chosen is not None:
                return Chosen(chosen.handler, (self, *chosen.routers))
        return None

    async def dispatch(self, ctx: Context) -> bool:
        """Run the first handler that matches the text; False when none did. Errors
        propagate: the adapter's turn (`adapter.bot.turn`) adds error handlers and the
        time limit."""
        chosen = await self.choose(ctx)
        if chosen is None:
            return False
        await run_handler(chosen.handler, ctx)
        return True

    def error_handler_for(
        self, error: Exception, routers: tuple[Router, ...] = ()
    ) -> ErrorHandler | None:
        """The error handler for `error` raised under `routers` (root first; this router
        alone when empty): the innermost router's first matching one."""
        for router in reversed(routers or (self,)):
            for route in router._error_routes:
                if isinstance(error, route.errors):
                    return route.handler
        return None

    async def dispatch_status(self, update: StatusUpdate) -> int:
        """Run every status handler that wants this status, here and in included
        routers; return how many ran. A handler that raises stops the rest."""
        status = update.status.lower()
        ran = 0
        for route in self._status_routes:
            if route.statuses is None or status in route.statuses:
                await run_handler(route.handler, update)
                ran += 1
        for router in self._included:
            ran += await router.dispatch_status(update)
        return ran


async def run_handler(handler: Callable[..., Awaitable[None] | None], *arguments: object) -> None:
    """Await an `async def` handler; run a plain one in a thread of its own."""
    if _is_async(handler):
        result = handler(*arguments)
        if inspect.isawaitable(result):
            await result
        return
    name = getattr(handler, "__name__", "handler")
    result = await run_in_thread(lambda: handler(*arguments), name=f"bot-handler {name}")
    if inspect.isawaitable(result):  # a plain function that returned a coroutine
        await result


async def run_hook(hook: Hook) -> None:
    """Startup and shutdown hooks run on the loop (nothing else is running then), so a
    sync hook may open things that belong to the main thread."""
    result = hook()
    if inspect.isawaitable(result):
        await result


def _is_async(function: object) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    # A callable object with an async __call__, or a functools.partial of one.
    call = getattr(function, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(function, "func", None)
    )


def _require_callable(handler: object, where: str) -> None:
    if not callable(handler):
        raise TypeError(f"{where} decorates a function, got {handler!r}")
