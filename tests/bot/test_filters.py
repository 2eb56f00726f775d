import re

import pytest

from adapter.bot.context import Context
from adapter.bot.filters import (
    Contains,
    F,
    Filter,
    FilterResult,
    From,
    HasMedia,
    Keyword,
    Regex,
    StartsWith,
    To,
)
from adapter.testing import inbound_message

PERSON = "+15551230000"
OURS = "+15005550006"
PHOTO = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"


def context(text: str, *, media: tuple[str, ...] = (), person: str = PERSON) -> Context:
    message = inbound_message(text, person=person, ours=OURS, media=media)
    return Context(message=message, bot_name="test")


def outcome(result: FilterResult) -> bool | str:
    """A match as the text it matched, so tables can say what the handler would see."""
    return result.group(0) if isinstance(result, re.Match) else result


async def is_even_length(ctx: Context) -> bool:
    return len(ctx.text) % 2 == 0


@pytest.mark.parametrize(
    ("flt", "text", "expected"),
    [
        # Keywords are the whole trimmed text, any case, as carriers treat HELP and STOP.
        (Keyword("HELP"), "help", True),
        (Keyword("HELP"), " HELP ", True),
        (Keyword("HELP"), "Help\n", True),
        (Keyword("HELP"), "help me", False),
        (Keyword("HELP"), "helpful", False),
        (Keyword("HELP"), "", False),
        (Keyword("STOP", "END"), "end", True),
        (Keyword(" help "), "HELP", True),
        (Keyword("STRASSE"), "straße", True),
        (Keyword("HELP", case_sensitive=True), "help", False),
        (Keyword("HELP", case_sensitive=True), " HELP", True),
        (StartsWith("order"), "Order 12", True),
        (StartsWith("order"), "  order 12", True),
        (StartsWith("order"), "my order", False),
        (StartsWith("order", case_sensitive=True), "Order 12", False),
        (Contains("refund"), "I want a REFUND now", True),
        (Contains("refund", "return"), "can I return it", True),
        (Contains("refund"), "refun", False),
        (Regex(r"order\s+#?(\d+)", re.IGNORECASE), "where is ORDER #12?", "ORDER #12"),
        (Regex(r"order\s+#?(\d+)"), "where is ORDER #12?", False),
        (Regex(re.compile(r"\d+")), "room 101", "101"),
        (From(PERSON), "hi", True),
        (From("+15559999999", PERSON), "hi", True),
        (From("+15559999999"), "hi", False),
        (To(OURS), "hi", True),
        (To("+15559999999"), "hi", False),
        (F(lambda ctx: ctx.text.isupper()), "HEY", True),
        (F(lambda ctx: ctx.text.isupper()), "hey", False),
        (F(lambda ctx: re.match(r"h(.)", ctx.text)), "hey", "he"),
        (F(is_even_length), "ab", True),
        (F(is_even_length), "abc", False),
        # Combinations.
        (Keyword("HI") | Keyword("HELLO"), "hello", True),
        (Keyword("HI") | Keyword("HELLO"), "hey", False),
        (StartsWith("order") & Contains("#"), "order #5", True),
        (StartsWith("order") & Contains("#"), "order 5", False),
        (~Keyword("STOP"), "stop", False),
        (~Keyword("STOP"), "go", True),
        (~Regex(r"\d"), "no digits", True),
        (~Regex(r"\d"), "4 digits", False),
        (~~Keyword("HI"), "hi", True),
        # The handler sees the match of the regex that matched, wherever it sits.
        (Keyword("HI") | Regex(r"(\d+)"), "call 555", "555"),
        (Regex(r"^x") | Regex(r"\d+"), "call 555", "555"),
        (Regex(r"\d+") | Regex(r"call"), "call 555", "555"),
        (Contains("call") & Regex(r"\d+"), "call 555", "555"),
        (Regex(r"call") & Regex(r"\d+"), "call 555", "call"),
        (Regex(r"call") & Keyword("x"), "call 555", False),
        (Keyword("HI") | (Contains("call") & Regex(r"\d+")), "call 555", "555"),
    ],
    ids=repr,
)
async def test_filter_on_text(flt: Filter, text: str, expected: bool | str) -> None:
    assert outcome(await flt(context(text))) == expected


@pytest.mark.parametrize(
    ("media", "expected"),
    [((), False), ((PHOTO,), True), ((PHOTO, PHOTO + "2"), True)],
)
async def test_has_media(media: tuple[str, ...], expected: bool) -> None:
    assert await HasMedia()(context("", media=media)) is expected


async def test_whatsapp_sender_is_matched_by_its_full_address() -> None:
    ctx = context("hi", person="whatsapp:" + PERSON)
    assert await From("whatsapp:" + PERSON)(ctx) is True
    assert await From(PERSON)(ctx) is False


def noting(seen: list[str], name: str, answer: bool) -> F:
    """A filter that answers `answer` and notes that it was asked."""

    def predicate(ctx: Context) -> bool:
        seen.append(name)
        return answer

    return F(predicate)


async def test_or_stops_at_the_first_filter_that_matches() -> None:
    seen: list[str] = []
    flt = noting(seen, "first", True) | noting(seen, "second", False)
    assert await flt(context("hi")) is True
    assert seen == ["first"]


async def test_and_stops_at_the_first_filter_that_does_not_match() -> None:
    seen: list[str] = []
    flt = noting(seen, "first", False) & noting(seen, "second", True)
    assert await flt(context("hi")) is False
    assert seen == ["first"]


async def test_a_filter_leaves_the_context_alone() -> None:
    # Only the router sets ctx.match, for the handler it chose.
    ctx = context("order 5")
    await (Regex(r"order (\d)") & Keyword("x"))(ctx)
    assert not ctx.has_match


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda: Keyword(), ValueError, "Keyword() needs at least one string"),
        (lambda: Keyword("HELP", " "), ValueError, "non-empty strings"),
        (lambda: StartsWith(), ValueError, "StartsWith() needs at least one string"),
        (lambda: From(), ValueError, "From() needs one or more addresses"),
        (lambda: To(""), ValueError, "To() needs one or more addresses"),
        (lambda: Regex("("), re.error, "missing ), unterminated subpattern"),
        (lambda: F("HELP"), TypeError, "F() takes a function"),  # type: ignore[arg-type]
        (
            lambda: Keyword("A") & (lambda ctx: True),  # type: ignore[operator]
            TypeError,
            "wrap a plain function in F(...)",
        ),
        (
            lambda: Keyword("A") | "B",  # type: ignore[operator]
            TypeError,
            "takes filters such as Keyword('HELP')",
        ),
        (
            lambda: Keyword("A") & Keyword("B") & "C",  # type: ignore[operator]
            TypeError,
            "And() takes filters such as Keyword('HELP')",
        ),
        (lambda: Keyword("A") and Keyword("B"), TypeError, "combine filters with &, | and ~"),
        (lambda: Keyword("A") or Keyword("B"), TypeError, "combine filters with &, | and ~"),
        (lambda: not Keyword("A"), TypeError, "combine filters with &, | and ~"),
    ],
)
def test_a_mistake_is_reported_where_the_filter_is_written(
    make: object, error: type[Exception], text: str
) -> None:
    assert callable(make)
    with pytest.raises(error, match=re.escape(text)):
        make()


@pytest.mark.parametrize(
    ("flt", "shown"),
    [
        (Keyword("HELP", "info"), "Keyword('help', 'info')"),
        (Keyword("HELP", case_sensitive=True), "Keyword('HELP', case_sensitive=True)"),
        (Regex(r"\d+", re.IGNORECASE), r"Regex('\\d+', flags=re.IGNORECASE)"),
        (
            Keyword("A") | StartsWith("b") & ~HasMedia(),
            "Keyword('a') | (StartsWith('b') & ~HasMedia())",
        ),
        # Chains read as written, without the parentheses of how they nest.
        (Keyword("A") & Keyword("B") & Keyword("C"), "Keyword('a') & Keyword('b') & Keyword('c')"),
        (Keyword("A") | Keyword("B") | Keyword("C"), "Keyword('a') | Keyword('b') | Keyword('c')"),
        (
            (Keyword("A") | Keyword("B")) & From("+1555"),
            "(Keyword('a') | Keyword('b')) & From('+1555')",
        ),
    ],
)
def test_repr_shows_what_a_handler_waits_for(flt: Filter, shown: str) -> None:
    assert repr(flt) == shown
