from __future__ import annotations

from typing import Any

import pytest

from adapter.devtools.console.sending import PersonText, TextRefused, parse_person_text

PERSON = "+15551234567"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"person": PERSON, "body": "hi"}, PersonText(PERSON, None, "hi", ())),
        ({"person": f" {PERSON} ", "body": "hi"}, PersonText(PERSON, None, "hi", ())),
        (
            {"person": "whatsapp:" + PERSON, "ours": "whatsapp:+15005550006", "body": "hola"},
            PersonText("whatsapp:" + PERSON, "whatsapp:+15005550006", "hola", ()),
        ),
        (
            {"person": PERSON, "media": ["https://example.com/a.png"]},
            PersonText(PERSON, None, "", ("https://example.com/a.png",)),
        ),
        ({"person": PERSON, "ours": "", "body": "hi"}, PersonText(PERSON, None, "hi", ())),
    ],
)
def test_a_good_text_is_taken_as_given(data: dict[str, Any], expected: PersonText) -> None:
    assert parse_person_text(data) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (["not", "an", "object"], "expected a JSON object"),
        ({"body": "hi"}, "Enter the person's number"),
        ({"person": "5551234567", "body": "hi"}, "is not an E.164 number"),
        ({"person": "+0551234567", "body": "hi"}, "is not an E.164 number"),
        ({"person": PERSON, "ours": "+1", "body": "hi"}, "Our number '+1' is not"),
        ({"person": PERSON, "body": ""}, "The message is empty"),
        ({"person": PERSON, "body": " \n "}, "The message is empty"),
        ({"person": PERSON, "body": 5}, "body must be text"),
        ({"person": PERSON, "body": "x" * 1601}, "at most 1600 characters"),
        ({"person": PERSON, "media": "https://example.com/a.png"}, "media must be a list"),
        ({"person": PERSON, "media": ["javascript:alert(1)"]}, "not an http(s) URL"),
        ({"person": PERSON, "media": ["https://e.com/"] * 11}, "At most 10 media URLs"),
    ],
)
def test_a_bad_text_is_refused_saying_why(data: object, reason: str) -> None:
    with pytest.raises(TextRefused) as refused:
        parse_person_text(data)
    assert reason in refused.value.reason
    assert refused.value.status == 400


def test_the_emulator_gets_the_text_as_twilio_names_its_fields() -> None:
    text = PersonText(PERSON, "+15005550006", "hi", ("https://example.com/a.png",))
    assert text.emulator_json() == {
        "From": PERSON,
        "To": "+15005550006",
        "Body": "hi",
        "MediaUrl": ["https://example.com/a.png"],
    }
    assert PersonText(PERSON, None, "hi", ()).emulator_json() == {"From": PERSON, "Body": "hi"}
