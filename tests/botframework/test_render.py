"""Bot Framework message activities as SMS: what a person's phone would show."""

from __future__ import annotations

import re
from typing import Any

import pytest

from adapter.botframework.render import Rendered, SmsPart, render_message

HERO = "application/vnd.microsoft.card.hero"
THUMBNAIL = "application/vnd.microsoft.card.thumbnail"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


def button(title: str, kind: str = "imBack", value: str | None = None) -> dict[str, Any]:
    return {"type": kind, "title": title, "value": title if value is None else value}


CASES: dict[str, tuple[dict[str, Any], list[SmsPart]]] = {
    "plain text": ({"text": "Hello"}, [SmsPart("Hello")]),
    "image attachment": (
        {
            "text": "Look",
            "attachments": [{"contentType": "image/png", "contentUrl": "https://x.example/a.png"}],
        },
        [SmsPart("Look", ("https://x.example/a.png",))],
    ),
    "media alone": (
        {"attachments": [{"contentType": "audio/mpeg", "contentUrl": "https://x.example/a.mp3"}]},
        [SmsPart("", ("https://x.example/a.mp3",))],
    ),
    "hero card": (
        {
            "attachments": [
                {
                    "contentType": HERO,
                    "content": {
                        "title": "Pick a size",
                        "subtitle": "T-shirts",
                        "text": "Which one?",
                        "buttons": [button("Small"), button("Large")],
                    },
                }
            ]
        },
        [SmsPart("Pick a size\nT-shirts\nWhich one?\n1. Small\n2. Large")],
    ),
    "thumbnail card with a link button": (
        {
            "attachments": [
                {
                    "contentType": THUMBNAIL,
                    "content": {
                        "title": "Docs",
                        "buttons": [button("Read", "openUrl", "https://docs.example.com")],
                    },
                }
            ]
        },
        [SmsPart("Docs\n1. Read: https://docs.example.com")],
    ),
    "suggested actions": (
        {
            "text": "Pizza?",
            "suggestedActions": {
                "actions": [button("Yes"), button("No"), {"type": "imBack", "value": "Maybe"}]
            },
        },
        [SmsPart("Pizza?\n\n1. Yes\n2. No\n3. Maybe")],
    ),
    "one numbering through cards and suggested actions": (
        {
            "text": "Choose",
            "attachments": [
                {"contentType": HERO, "content": {"buttons": [button("A"), button("B")]}}
            ],
            "suggestedActions": {"actions": [button("Neither")]},
        },
        [SmsPart("Choose\n\n1. A\n2. B\n\n3. Neither")],
    ),
    "eleven media over two messages": (
        {
            "text": "Album",
            "attachments": [
                {"contentType": "image/jpeg", "contentUrl": f"https://x.example/{i}.jpg"}
                for i in range(11)
            ],
        },
        [
            SmsPart("Album", tuple(f"https://x.example/{i}.jpg" for i in range(10))),
            SmsPart("", ("https://x.example/10.jpg",)),
        ],
    ),
}


@pytest.mark.parametrize(("activity", "expected"), CASES.values(), ids=CASES.keys())
def test_rendering(activity: dict[str, Any], expected: list[SmsPart]) -> None:
    rendered = render_message({"type": "message", **activity})
    assert rendered == Rendered(parts=expected, skipped=[])


def test_a_long_text_is_split_between_words() -> None:
    text = " ".join(["word"] * 500)  # 2,499 characters

    parts = render_message({"type": "message", "text": text}).parts

    assert len(parts) == 2
    assert all(len(part.body) <= 1600 for part in parts)
    assert " ".join(part.body for part in parts) == text


@pytest.mark.parametrize(
    ("attachment", "skipped"),
    [
        ({"contentType": ADAPTIVE, "content": {"type": "AdaptiveCard"}}, ADAPTIVE),
        ({"contentType": "image/png", "contentUrl": "data:image/png;base64,AAAA"}, "image/png"),
        (
            {"contentType": "application/vnd.microsoft.card.receipt", "contentUrl": "https://x"},
            "application/vnd.microsoft.card.receipt",
        ),
        ({"content": {"text": "?"}}, "an attachment without a contentType"),
    ],
)
def test_what_sms_cannot_carry_is_left_out_and_named(
    attachment: dict[str, Any], skipped: str
) -> None:
    rendered = render_message({"type": "message", "text": "Hi", "attachments": [attachment]})
    assert rendered == Rendered(parts=[SmsPart("Hi")], skipped=[skipped])


@pytest.mark.parametrize(
    ("activity", "where"),
    [
        ({"text": 5}, "activity.text"),
        ({"attachments": {"contentType": HERO}}, "attachments"),
        ({"attachments": [{"contentType": HERO, "content": "Pick"}]}, "attachments[0].content"),
        (
            {"attachments": [{"contentType": HERO, "content": {"title": ["x"]}}]},
            "attachments[0].content.title",
        ),
        ({"suggestedActions": ["Yes"]}, "suggestedActions"),
        ({"suggestedActions": {"actions": [{"title": 1}]}}, "suggestedActions.actions[0].title"),
    ],
)
def test_fields_of_the_wrong_type_are_named(activity: dict[str, Any], where: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(where)):
        render_message({"type": "message", **activity})
