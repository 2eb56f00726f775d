"""Filters decide which handler gets a text.

A filter is called with the handler's `Context` and answers True or False, or an
`re.Match` when it has something to show the handler: the router puts that match in
`ctx.match` before the handler runs. Filters combine with `&`, `|` and `~`:

    @router.message(Keyword("HELP") | Regex(r"^what can you do"))

When a combination holds a `Regex`, the handler sees the match of the regex that
matched (the first one, reading left to right). Filters have no side effects, so a
filter that matched for a handler that was then passed over leaves nothing behind.
"""

from __future__ import annotations

import abc
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapter.bot.context import Context

FilterResult = bool | re.Match[str]


class Filter(abc.ABC):
    """Base class of all filters: implement `__call__`."""

    @abc.abstractmethod
    async def __call__(self, ctx: Context) -> FilterResult: ...

    def __and__(self, other: Filter) -> And:
        return And(self, other)

    def __or__(self, other: Filter) -> Or:
        return Or(self, other)

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> bool:
        # `Keyword("a") or Keyword("b")` would otherwise quietly mean `Keyword("a")`.
        raise TypeError("combine filters with &, | and ~ (not `and`, `or`, `not`)")


def require_filters(filters: tuple[object, ...], where: str) -> tuple[Filter, ...]:
    """Reject anything that is not a Filter where it is written, not when a text arrives."""
    checked: list[Filter] = []
    for candidate in filters:
        if not isinstance(candidate, Filter):
            raise TypeError(
                f"{where} takes filters such as Keyword('HELP') or Regex(r'...'), "
                f"got {candidate!r}; wrap a plain function in F(...)"
            )
        checked.append(candidate)
    return tuple(checked)


class And(Filter):
    """Every filter matches. Evaluation stops at the first that does not."""

    def __init__(self, *filters: Filter) -> None:
        checked = require_filters(filters, "And()")
        self.filters: tuple[Filter, ...] = tuple(
            part for f in checked for part in (f.filters if isinstance(f, And) else (f,))
        )

    async def __call__(self, ctx: Context) -> FilterResult:
        first_match: re.Match[str] | None = None
        for f in self.filters:
            result = await f(ctx)
            if not result:
                return False
            if first_match is None and isinstance(result, re.Match):
                first_match = result
        return first_match if first_match is not None else True

    def __repr__(self) -> str:
        return " & ".join(_grouped(f) for f in self.filters)


class Or(Filter):
    """Any filter matches. Evaluation stops at the first that does."""

    def __init__(self, *filters: Filter) -> None:
        checked = require_filters(filters, "Or()")
        self.filters: tuple[Filter, ...] = tuple(
            part for f in checked for part in (f.filters if isinstance(f, Or) else (f,))
        )

    async def __call__(self, ctx: Context) -> FilterResult:
        for f in self.filters:
            result = await f(ctx)
            if result:
                return result
        return False

    def __repr__(self) -> str:
        return " | ".join(_grouped(f) for f in self.filters)


class Not(Filter):
    def __init__(self, inner: Filter) -> None:
        (self.inner,) = require_filters((inner,), "Not()")

    async def __call__(self, ctx: Context) -> FilterResult:
        return not await self.inner(ctx)

    def __repr__(self) -> str:
        return f"~{_grouped(self.inner)}"


def _grouped(f: Filter) -> str:
    return f"({f!r})" if isinstance(f, And | Or) else repr(f)


class _TextFilter(Filter):
    """Shared setup of the filters that compare the text with a few strings."""

    def __init__(self, *strings: str, case_sensitive: bool = False) -> None:
        name = type(self).__name__
        if not strings:
            raise ValueError(f"{name}() needs at least one string")
        if not all(isinstance(s, str) and s.strip() for s in strings):
            raise ValueError(f"{name}() takes non-empty strings, got {strings!r}")
        self.case_sensitive = case_sensitive
        self.strings = tuple(self._fold(s.strip()) for s in strings)

    def _fold(self, text: str) -> str:
        return text if self.case_sensitive else text.casefold()

    def __repr__(self) -> str:
        shown = ", ".join(repr(s) for s in self.strings)
        if self.case_sensitive:
            shown += ", case_sensitive=True"
        return f"{type(self).__name__}({shown})"


class Keyword(_TextFilter):
    """The whole text, trimmed, is one of the words, as carriers treat keywords:
    "help" and " HELP " match Keyword("HELP"); "help me" does not."""

    async def __call__(self, ctx: Context) -> FilterResult:
        return self._fold(ctx.text.strip()) in self.strings


class StartsWith(_TextFilter):
    """The text, ignoring leading spaces, starts with one of the strings."""

    async def __call__(self, ctx: Context) -> FilterResult:
        return self._fold(ctx.text.lstrip()).startswith(self.strings)


class Contains(_TextFilter):
    """One of the strings occurs anywhere in the text."""

    async def __call__(self, ctx: Context) -> FilterResult:
        text = self._fold(ctx.text)
        return any(s in text for s in self.strings)


class Regex(Filter):
    """`re.search` on the text; the handler finds the match in `ctx.match`."""

    def __init__(self, pattern: str | re.Pattern[str], flags: int | re.RegexFlag = 0) -> None:
        self.pattern: re.Pattern[str] = re.compile(pattern, flags)

    async def __call__(self, ctx: Context) -> FilterResult:
        return self.pattern.search(ctx.text) or False

    def __repr__(self) -> str:
        flags = re.RegexFlag(self.pattern.flags & ~re.UNICODE)  # re adds UNICODE to str patterns
        return f"Regex({self.pattern.pattern!r}{f', flags={flags!r}' if flags else ''})"


class HasMedia(Filter):
    """The text came with at least one picture, video or other file (MMS)."""

    async def __call__(self, ctx: Context) -> FilterResult:
        return len(ctx.message.media) > 0

    def __repr__(self) -> str:
        return "HasMedia()"


class _AddressFilter(Filter):
    def __init__(self, *addresses: str) -> None:
        name = type(self).__name__
        if not addresses or not all(isinstance(a, str) and a.strip() for a in addresses):
            raise ValueError(f"{name}() needs one or more addresses such as '+15550001111'")
        self.addresses = frozenset(a.strip() for a in addresses)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(a) for a in sorted(self.addresses))})"


class From(_AddressFilter):
    """The person texting is one of these numbers (or whatsapp: addresses)."""

    async def __call__(self, ctx: Context) -> FilterResult:
        return ctx.message.from_ in self.addresses


class To(_AddressFilter):
    """The text was sent to one of these numbers of ours."""

    async def __call__(self, ctx: Context) -> FilterResult:
        return ctx.message.to in self.addresses


class F(Filter):
    """An ad-hoc predicate, sync or async: `F(lambda ctx: ctx.state.get("name") is None)`.

    A truthy answer matches; an `re.Match` answer is shown to the handler as `ctx.match`.
    """

    def __init__(self, predicate: Callable[[Context], object]) -> None:
        if not callable(predicate):
            raise TypeError(f"F() takes a function of the context, got {predicate!r}")
        self.predicate = predicate

    async def __call__(self, ctx: Context) -> FilterResult:
        result = self.predicate(ctx)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, re.Match):
            return result
        return bool(result)

    def __repr__(self) -> str:
        return f"F({getattr(self.predicate, '__qualname__', repr(self.predicate))})"
