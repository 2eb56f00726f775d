import re

import pytest

from adapter.bot.context import Context, NoMatch
from adapter.bot.filters import Contains, F, Keyword, Regex, StartsWith
from adapter.bot.router import Router, StatusUpdate
from adapter.testing import inbound_message


def context(text: str) -> Context:
    return Context(message=inbound_message(text), bot_name="test")


def status_update(status: str) -> StatusUpdate:
    return StatusUpdate(
        message_sid="SM" + "1" * 32,
        status=status,
        error_code=30003 if status == "undelivered" else None,
        to="+15551230000",
        from_="+15005550006",
        body="hello",
        conversation="+15005550006|+15551230000",
    )


def recording_router(ran: list[str]) -> Router:
    """Handlers that record their name; several match the same texts, on purpose."""
    router = Router("recording")

    @router.message(Keyword("HELP"))
    async def help_(ctx: Context) -> None:
        ran.append("help")

    @router.message(StartsWith("order"), Regex(r"(\d+)"))
    async def order(ctx: Context) -> None:
        ran.append("order")

    @router.message(StartsWith("order"))
    async def order_without_number(ctx: Context) -> None:
        ran.append("order without number")

    @router.message()
    async def fallback(ctx: Context) -> None:
        ran.append("fallback")

    return router


@pytest.mark.parametrize(
    ("text", "handler"),
    [
        ("help", "help"),
        ("order 12", "order"),  # the first match wins, though three handlers match
        ("order twelve", "order without number"),  # every filter of a handler must match
        ("12 orders", "fallback"),
        ("", "fallback"),
    ],
)
async def test_the_first_matching_handler_handles_the_text(text: str, handler: str) -> None:
    ran: list[str] = []
    assert await recording_router(ran).dispatch(context(text)) is True
    assert ran == [handler]


async def test_filters_of_later_handlers_are_not_evaluated_after_a_match() -> None:
    evaluated: list[str] = []
    router = Router()

    def evaluating(name: str) -> F:
        def predicate(ctx: Context) -> bool:
            evaluated.append(name)
            return True

        return F(predicate)

    @router.message(evaluating("first"))
    async def first(ctx: Context) -> None:
        pass

    @router.message(evaluating("second"))
    async def second(ctx: Context) -> None:
        pass

    await router.dispatch(context("hi"))
    assert evaluated == ["first"]


async def test_dispatch_is_false_when_no_handler_matches() -> None:
    router = Router()

    @router.message(Keyword("HELP"))
    async def help_(ctx: Context) -> None:
        await ctx.reply("menu")

    ctx = context("hello")
    assert await router.dispatch(ctx) is False
    assert ctx.replies == []


async def test_a_plain_def_handler_works_like_an_async_one() -> None:
    router = Router()

    @router.message()
    def remember(ctx: Context) -> None:
        ctx.state["last"] = ctx.text

    ctx = context("hi")
    assert await router.dispatch(ctx) is True
    assert ctx.state == {"last": "hi"}


async def test_the_handler_sees_the_match_of_its_own_regex() -> None:
    seen: list[re.Match[str] | None] = []
    router = Router()

    # This regex matches "order 7" but its handler is passed over (no "#").
    @router.message(Regex(r"order (\d+)"), Contains("#"))
    async def with_hash(ctx: Context) -> None:
        seen.append(ctx.match)

    @router.message(Keyword("x") | Regex(r"(?P<word>\w+) (?P<number>\d+)"))
    async def order(ctx: Context) -> None:
        seen.append(ctx.match)

    await router.dispatch(context("order 7"))
    [match] = seen
    assert match is not None
    assert match.group("word", "number") == ("order", "7")


async def test_a_handler_without_regex_sees_no_match() -> None:
    seen: list[bool] = []
    router = Router()

    @router.message(Regex(r"\d"), Keyword("never"))
    async def never(ctx: Context) -> None:
        seen.append(ctx.has_match)

    @router.message()
    async def fallback(ctx: Context) -> None:
        seen.append(ctx.has_match)
        with pytest.raises(NoMatch, match="only in a handler chosen by a Regex filter"):
            ctx.match.group(0)

    await router.dispatch(context("order 7"))
    assert seen == [False]


async def test_the_match_is_typed_for_strict_code() -> None:
    router = Router()
    seen: list[str] = []

    @router.message(Regex(r"order\s+(\d+)"))
    async def order(ctx: Context) -> None:
        seen.append(ctx.match[1])  # no assert: ctx.match is a re.Match[str]

    await router.dispatch(context("order 42"))
    assert seen == ["42"]


async def test_an_exception_in_a_handler_reaches_the_caller() -> None:
    router = Router()

    @router.message()
    async def broken(ctx: Context) -> None:
        raise LookupError("no such order")

    with pytest.raises(LookupError, match="no such order"):
        await router.dispatch(context("hi"))


async def test_included_routers_are_tried_after_own_handlers_in_inclusion_order() -> None:
    ran: list[str] = []
    parent, first, second = Router("parent"), Router("first"), Router("second")
    # Included before the parent registers its own handler: still tried after it.
    parent.include_router(first)
    parent.include_router(second)

    @parent.message(Keyword("HELP"))
    async def parent_help(ctx: Context) -> None:
        ran.append("parent help")

    @first.message(Keyword("HELP", "ORDER"))
    async def first_handler(ctx: Context) -> None:
        ran.append("first")

    @second.message()
    async def second_handler(ctx: Context) -> None:
        ran.append("second")

    for text in ("help", "order", "anything"):
        await parent.dispatch(context(text))
    assert ran == ["parent help", "first", "second"]


async def test_nested_routers_are_searched_depth_first() -> None:
    ran: list[str] = []
    root, child, grandchild, sibling = Router(), Router(), Router(), Router()
    root.include_router(child)
    child.include_router(grandchild)
    root.include_router(sibling)

    @grandchild.message()
    async def deep(ctx: Context) -> None:
        ran.append("grandchild")

    @sibling.message()
    async def shallow(ctx: Context) -> None:
        ran.append("sibling")

    assert await root.dispatch(context("hi")) is True
    assert ran == ["grandchild"]


def test_including_a_router_in_itself_or_its_descendant_is_refused() -> None:
    root, child = Router("root"), Router("child")
    root.include_router(child)
    with pytest.raises(ValueError, match="would make a loop"):
        root.include_router(root)
    with pytest.raises(ValueError, match="would make a loop"):
        child.include_router(root)


async def test_status_handlers_run_for_the_statuses_they_asked_for() -> None:
    ran: list[tuple[str, str]] = []
    router, included = Router(), Router()
    router.include_router(included)

    @router.status("failed", "undelivered")
    async def not_delivered(update: StatusUpdate) -> None:
        ran.append(("not delivered", update.status))

    @router.status()
    def every(update: StatusUpdate) -> None:
        ran.append(("every", update.status))

    @included.status("Delivered")
    async def delivered(update: StatusUpdate) -> None:
        ran.append(("delivered", update.status))

    counts = {s: await router.dispatch_status(status_update(s)) for s in ("sent", "undelivered")}
    counts["delivered"] = await router.dispatch_status(status_update("DELIVERED"))
    assert counts == {"sent": 1, "undelivered": 2, "delivered": 2}
    assert ran == [
        ("every", "sent"),
        ("not delivered", "undelivered"),
        ("every", "undelivered"),
        ("every", "DELIVERED"),
        ("delivered", "DELIVERED"),
    ]


async def test_a_router_without_status_handlers_runs_none() -> None:
    assert await Router().dispatch_status(status_update("failed")) == 0


def test_a_misspelt_status_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"unknown message status 'deliverd'; Twilio's statuses"):
        Router().status("delivered", "deliverd")


@pytest.mark.parametrize(
    ("register", "text"),
    [
        (lambda r: r.message(lambda ctx: None), "write @router.message() with parentheses"),
        (lambda r: r.message(Keyword("A"), "B"), "takes filters such as Keyword('HELP')"),
        (lambda r: r.message()("not a function"), "decorates a function"),
        (lambda r: r.status(lambda update: None), "write @router.status() with parentheses"),
        (lambda r: r.include_router("bots.echo:router"), "include_router() takes a Router"),
    ],
)
def test_a_registration_mistake_is_reported_at_once(register: object, text: str) -> None:
    assert callable(register)
    with pytest.raises(TypeError, match=re.escape(text)):
        register(Router())


async def test_a_bare_decorator_is_refused_before_the_bot_runs() -> None:
    router = Router()
    with pytest.raises(TypeError, match=r"@router.message\(\) with parentheses above echo"):

        @router.message  # type: ignore[arg-type]
        async def echo(ctx: Context) -> None:
            await ctx.reply(ctx.text)
