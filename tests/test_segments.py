"""Long messages: segments counted as Twilio bills them, and replies over 1,600 characters
split between words, truncated, or refused."""

from __future__ import annotations

import re

import pytest

from adapter.bot.context import Context, ReplyTooLong
from adapter.long_messages import (
    MAX_BODY_CHARS,
    TRUNCATION_MARK,
    LongMessages,
    parse_long_messages,
    split_body,
    truncate_body,
)
from adapter.segments import count_segments, encoding_of
from adapter.testing import inbound_message

PHOTO = "https://example.com/cat.jpg"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        pytest.param("", 1, id="empty"),
        pytest.param("hello", 1, id="short-gsm"),
        pytest.param("a" * 160, 1, id="gsm-160-single"),
        pytest.param("a" * 161, 2, id="gsm-161-two"),
        pytest.param("a" * 153 * 2, 2, id="gsm-153x2"),
        pytest.param("a" * (153 * 2 + 1), 3, id="gsm-153x2+1"),
        pytest.param("a" * 153 * 3, 3, id="gsm-153x3"),
        pytest.param("a" * (153 * 3 + 1), 4, id="gsm-153x3+1"),
        pytest.param("a" * 1600, 11, id="gsm-longest-body"),
        pytest.param("é" * 160, 1, id="accented-in-gsm-basic"),
        pytest.param("Ç" * 160, 1, id="capital-c-cedilla-is-gsm"),
        pytest.param("€" * 80, 1, id="euro-counts-two"),
        pytest.param("€" * 81, 2, id="euro-over-single"),
        pytest.param("{" + "a" * 159, 2, id="brace-counts-two"),
        pytest.param("[]" * 40, 1, id="brackets-count-two-each"),
        # 306 septets would be 2 parts, but the escape pair may not straddle parts.
        pytest.param("a" * 152 + "{" + "a" * 152, 3, id="escape-not-split"),
        pytest.param("ç" * 70, 1, id="ucs2-70-single"),
        pytest.param("ç" * 71, 2, id="ucs2-71-two"),
        pytest.param("ç" * 67 * 2, 2, id="ucs2-67x2"),
        pytest.param("ç" * (67 * 2 + 1), 3, id="ucs2-67x2+1"),
        pytest.param("😀" * 35, 1, id="emoji-two-units-each"),
        pytest.param("😀" * 36, 2, id="emoji-over"),
        # 134 code units would be 2 parts, but a surrogate pair may not straddle parts.
        pytest.param("ç" * 66 + "😀" + "ç" * 66, 3, id="surrogate-not-split"),
        pytest.param("Hello 👋", 1, id="mixed-gsm-and-emoji"),
        pytest.param("a" * 69 + "👋", 2, id="one-emoji-makes-all-ucs2"),
        pytest.param("€" * 70 + "ç", 2, id="euro-costs-one-unit-in-ucs2"),
        pytest.param("€" * 69 + "ç", 1, id="ucs2-euro-70-units"),
    ],
)
def test_count_segments(body: str, segments: int) -> None:
    assert count_segments(body) == segments


@pytest.mark.parametrize(
    ("body", "encoding"),
    [("plain {text} €5", "GSM-7"), ("café ç", "UCS-2"), ("ok 👍", "UCS-2"), ("", "GSM-7")],
)
def test_one_character_outside_gsm7_makes_the_body_ucs2(body: str, encoding: str) -> None:
    assert encoding_of(body) == encoding


def words(count: int, word: str = "lorem") -> str:
    return " ".join(f"{word}{i}" for i in range(count))


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        pytest.param(" ab ", [" ab "], id="fits-as-it-is"),
        pytest.param("", [""], id="empty"),
        pytest.param("aaaa bbbb cccc", ["aaaa", "bbbb", "cccc"], id="at-each-space"),
        pytest.param("aaa bbb ccc", ["aaa", "bbb", "ccc"], id="word-as-long-as-limit-minus-one"),
        pytest.param("aaaaa bb", ["aaaa", "a bb"], id="word-longer-than-limit-is-cut"),
        pytest.param("aa\n\nbb cc", ["aa", "bb", "cc"], id="newlines-are-breaks"),
        pytest.param("  aaaa bb", ["aaaa", "bb"], id="no-blank-first-part"),
        pytest.param("ab cd ef", ["ab", "cd", "ef"], id="break-at-the-limit"),
        pytest.param("abc defgh", ["abc", "defg", "h"], id="long-word-after-break"),
    ],
)
def test_split_body_between_words(text: str, parts: list[str]) -> None:
    assert split_body(text, limit=4) == parts


def test_split_never_separates_a_letter_from_its_accent() -> None:
    # "e" + combining acute accent: cutting between them would leave a bare accent.
    text = "abc" + "e\u0301" + "fgh"
    parts = split_body(text, limit=4)
    assert parts == ["abc", "e\u0301fg", "h"]
    assert "".join(parts) == text


def test_a_3500_character_reply_splits_into_three_parts_keeping_every_word() -> None:
    text = words(700)[:3500].rstrip()
    parts = split_body(text)
    assert len(parts) == 3
    assert all(0 < len(part) <= MAX_BODY_CHARS for part in parts)
    assert " ".join(parts) == text  # broken only at spaces, nothing lost or reordered
    assert all(not part.startswith(" ") and not part.endswith(" ") for part in parts)


def test_truncate_cuts_between_words_and_marks_the_cut() -> None:
    text = words(500)
    truncated = truncate_body(text)
    assert len(truncated) <= MAX_BODY_CHARS
    assert truncated.endswith(TRUNCATION_MARK)
    kept = truncated.removesuffix(TRUNCATION_MARK)
    assert text.startswith(kept + " ")  # ends on a whole word
    assert len(kept) > MAX_BODY_CHARS - 20


def test_a_text_that_fits_is_not_truncated() -> None:
    assert truncate_body("x" * MAX_BODY_CHARS) == "x" * MAX_BODY_CHARS


@pytest.mark.parametrize(
    ("value", "policy"),
    [("split", LongMessages.SPLIT), (" Truncate ", LongMessages.TRUNCATE), ("REFUSE", "refuse")],
)
def test_the_setting_names_the_policy(value: str, policy: str) -> None:
    assert parse_long_messages(value) == policy


def test_an_unknown_policy_names_the_choices() -> None:
    with pytest.raises(ValueError, match="split, truncate, refuse"):
        parse_long_messages("wrap")


def context(policy: LongMessages) -> Context:
    message = inbound_message("hi", person="+15551230000", ours="+15005550006")
    return Context(message=message, bot_name="test", long_messages=policy)


async def test_a_long_reply_is_split_into_parts_in_order_with_media_on_the_first() -> None:
    ctx = context(LongMessages.SPLIT)
    text = words(700)[:3500].rstrip()
    await ctx.reply(text, media=[PHOTO])
    assert [len(r.body) <= MAX_BODY_CHARS for r in ctx.replies] == [True, True, True]
    assert " ".join(r.body for r in ctx.replies) == text
    assert [r.media_urls for r in ctx.replies] == [(PHOTO,), (), ()]
    assert {r.to for r in ctx.replies} == {"+15551230000"}


async def test_a_long_reply_is_truncated_when_so_configured() -> None:
    ctx = context(LongMessages.TRUNCATE)
    await ctx.reply(words(700))
    [reply] = ctx.replies
    assert len(reply.body) <= MAX_BODY_CHARS and reply.body.endswith(TRUNCATION_MARK)


async def test_a_long_reply_is_refused_when_so_configured_and_nothing_is_queued() -> None:
    ctx = context(LongMessages.REFUSE)
    await ctx.reply("first")
    with pytest.raises(ReplyTooLong, match="at most 1600 characters and this one has 1601"):
        await ctx.reply("x" * 1601)
    assert [r.body for r in ctx.replies] == ["first"]


@pytest.mark.parametrize("policy", list(LongMessages))
async def test_a_reply_of_exactly_1600_characters_is_one_message(policy: LongMessages) -> None:
    ctx = context(policy)
    await ctx.reply("x" * 1600)
    assert [len(r.body) for r in ctx.replies] == [1600]


@pytest.mark.parametrize(
    ("policy", "text", "segments"),
    [
        pytest.param(LongMessages.SPLIT, "hello", 1, id="short"),
        pytest.param(LongMessages.SPLIT, "a" * 161, 2, id="two-segments"),
        pytest.param(LongMessages.SPLIT, "¿Qué tal? 👋", 1, id="ucs2-short"),
        # Parts of 1600 + 1599 GSM-7 characters: 11 segments each.
        pytest.param(LongMessages.SPLIT, ("a" * 799 + " ") * 4, 22, id="split-parts-add-up"),
        # Cut after the last word that leaves room for "...": 1499 + 3 characters.
        pytest.param(LongMessages.TRUNCATE, ("a" * 99 + " ") * 32, 10, id="truncated-once"),
        pytest.param(LongMessages.REFUSE, "a" * 1700, 12, id="refused-counts-whole"),
    ],
)
def test_a_bot_can_count_segments_before_replying(
    policy: LongMessages, text: str, segments: int
) -> None:
    assert context(policy).segments(text) == segments


# --- where a part ends ---

FAMILY = "👨\u200d👩\u200d👧"  # one emoji: man, ZWJ, woman, ZWJ, girl


@pytest.mark.parametrize(
    ("text", "limit", "parts"),
    [
        # The last whitespace that fits, even right before the limit.
        ("one two three four", 8, ["one two", "three", "four"]),
        # Whitespace as early as the second character still makes a break.
        ("a bcdef", 3, ["a", "bcd", "ef"]),
        ("a b", 1, ["a", "b"]),
        # No whitespace at all: cut at the limit, between two plain letters.
        ("abcdefgh", 3, ["abc", "def", "gh"]),
        # A ZWJ emoji sequence is never split: the part ends before it.
        ("xxx" + FAMILY + "yyyyy", 5, ["xxx", FAMILY, "yyyyy"]),
        # One sequence longer than a whole part is cut at the limit, as a long word is.
        (FAMILY + "yy", 3, [FAMILY[:3], FAMILY[3:] + "y", "y"]),
        # A letter keeps its stack of accents, even when only two letters fit before it.
        ("abc" + "\u0301" * 3 + "d", 5, ["ab", "c" + "\u0301" * 3 + "d"]),
    ],
    ids=[
        "last-space",
        "space-second",
        "limit-one",
        "no-space",
        "zwj-emoji",
        "zwj-too-long",
        "accents-after-two-letters",
    ],
)
def test_where_split_ends_each_part(text: str, limit: int, parts: list[str]) -> None:
    assert split_body(text, limit) == parts


def test_a_family_emoji_at_a_1600_character_boundary_stays_whole() -> None:
    text = "x" * 1598 + FAMILY + " bye"
    first, second = split_body(text)
    assert (first, second) == ("x" * 1598, FAMILY + " bye")


def test_a_long_blank_reply_is_one_blank_part_not_dropped() -> None:
    assert split_body(" " * 1601) == [""]


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("aaa   bbbbbbbbb", 8, "aaa..."),  # the spaces before the cut go
        ("abcdef", 4, "a..."),  # the smallest limit that leaves room for one character
    ],
)
def test_where_truncate_cuts(text: str, limit: int, expected: str) -> None:
    assert truncate_body(text, limit) == expected


def test_a_limit_with_no_room_besides_the_mark_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("limit must leave room for '...'")):
        truncate_body("abcdef", 3)
    with pytest.raises(ValueError, match="limit must be at least 1"):
        split_body("abcdef", 0)


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("\U00010000" * 35, 1),  # the first character beyond 16 bits: two UTF-16 units
        ("\U00010000" * 36, 2),
        ("\uffff" * 70, 1),  # the last 16-bit one: a single unit
    ],
    ids=["astral-35", "astral-36", "last-bmp-70"],
)
def test_utf16_units_at_the_16_bit_edge(body: str, segments: int) -> None:
    assert count_segments(body) == segments
