"""Replies longer than one Twilio message (1,600 characters): split, truncate or refuse.

`SMS_ADAPTER_LONG_MESSAGES` picks the policy; `ctx.reply()` applies it. Splitting breaks
at the last whitespace that fits, so words stay whole; a part is cut inside a word only
when one "word" (a long URL, say) is itself longer than a whole message.
"""

from __future__ import annotations

import enum
import unicodedata

from adapter.twilio.limits import MAX_BODY_CHARS

# Twilio's limit on Body for one Message (error 21617 beyond it).
# Marks a truncated reply. Three dots rather than "…": that one character is outside
# GSM-7 and would make the whole reply UCS-2, more than doubling its segments.
TRUNCATION_MARK = "..."

_ZERO_WIDTH_JOINER = "\u200d"
# Combining accents, variation selectors and the like: they belong to the character before.
_MARKS = frozenset({"Mn", "Mc", "Me"})


class LongMessages(enum.StrEnum):
    SPLIT = "split"  # several messages, in order, each at most MAX_BODY_CHARS
    TRUNCATE = "truncate"  # the first MAX_BODY_CHARS, ending in TRUNCATION_MARK
    REFUSE = "refuse"  # ctx.reply() raises ReplyTooLong


def parse_long_messages(value: str) -> LongMessages:
    """The setting's value; ValueError names the choices."""
    try:
        return LongMessages(value.strip().lower())
    except ValueError:
        choices = ", ".join(policy.value for policy in LongMessages)
        raise ValueError(f"expected one of {choices}") from None


def split_body(text: str, limit: int = MAX_BODY_CHARS) -> list[str]:
    """`text` as parts of at most `limit` characters, broken between words.

    The whitespace at each break (and around a text that needs splitting) is dropped; a
    text that fits comes back as it is.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _break_before(rest, limit)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts


def truncate_body(text: str, limit: int = MAX_BODY_CHARS) -> str:
    """`text` cut between words to fit `limit` characters with TRUNCATION_MARK at the end."""
    if len(text) <= limit:
        return text
    room = limit - len(TRUNCATION_MARK)
    if room < 1:
        raise ValueError(f"limit must leave room for {TRUNCATION_MARK!r}")
    return text[: _break_before(text, room)].rstrip() + TRUNCATION_MARK


def _break_before(text: str, limit: int) -> int:
    """Where to end a part of `text` (longer than `limit`): at its last whitespace that
    leaves the part at most `limit` characters and not blank, else at `limit` itself."""
    for index in range(limit, 0, -1):
        if text[index].isspace() and not text[:index].isspace():
            return index
    return _hard_break(text, limit)


def _hard_break(text: str, limit: int) -> int:
    # Inside a word: still never between a letter and its combining accent, nor inside
    # an emoji sequence held together by zero-width joiners.
    cut = limit
    while cut > 1 and (
        unicodedata.category(text[cut]) in _MARKS
        or _ZERO_WIDTH_JOINER in (text[cut], text[cut - 1])
    ):
        cut -= 1
    return cut if cut > 1 else limit
