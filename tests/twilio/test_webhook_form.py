"""Twilio's raw webhook forms → typed inbound message and activity (parsing only).

The HTTP side (status codes, signatures, storing) is in tests/web/test_webhooks.py.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.activity import Activity
from adapter.twilio.webhook_form import (
    EMPTY_TWIML,
    MAX_FIELD_LENGTH,
    WebhookFormError,
    parse_form,
    parse_inbound,
    parse_status_callback,
)

ACCOUNT = "AC" + "1" * 32
SMS_SID = "SM" + "a" * 32
MMS_SID = "MM" + "b" * 32
CALLBACK = [("MessageSid", SMS_SID), ("AccountSid", ACCOUNT)]

PLAIN_SMS = [
    ("ToCountry", "US"),
    ("ToState", "CA"),
    ("SmsMessageSid", SMS_SID),
    ("NumMedia", "0"),
    ("ToCity", "SAN FRANCISCO"),
    ("FromZip", "94105"),
    ("SmsSid", SMS_SID),
    ("FromState", "CA"),
    ("SmsStatus", "received"),
    ("FromCity", "SAN FRANCISCO"),
    ("Body", "Hello there"),
    ("FromCountry", "US"),
    ("To", "+15005550006"),
    ("ToZip", "94105"),
    ("NumSegments", "1"),
    ("MessageSid", SMS_SID),
    ("AccountSid", ACCOUNT),
    ("From", "+15551234567"),
    ("ApiVersion", "2010-04-01"),
]
MMS_TWO_MEDIA = [
    ("MessageSid", MMS_SID),
    ("AccountSid", ACCOUNT),
    ("From", "+15551234567"),
    ("To", "+15005550006"),
    ("Body", ""),
    ("NumMedia", "2"),
    ("NumSegments", "1"),
    ("MediaUrl0", "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1"),
    ("MediaContentType0", "image/jpeg"),
    ("MediaUrl1", "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME2"),
    ("MediaContentType1", "video/mp4"),
]
STOP = [
    ("MessageSid", SMS_SID),
    ("AccountSid", ACCOUNT),
    ("From", "+15551234567"),
    ("To", "+15005550006"),
    ("Body", "STOP"),
    ("NumMedia", "0"),
    ("OptOutType", "STOP"),
    ("MessagingServiceSid", "MG" + "c" * 32),
]
WHATSAPP = [
    ("MessageSid", SMS_SID),
    ("AccountSid", ACCOUNT),
    ("From", "whatsapp:+14155238886"),
    ("To", "whatsapp:+15005550006"),
    ("Body", "¡Hola! 👋"),
    ("NumMedia", "0"),
    ("ProfileName", "Ana"),
    ("WaId", "14155238886"),
    ("SomethingTwilioAddedLater", "x"),
]


@pytest.mark.parametrize(
    ("form", "expected"),
    [
        pytest.param(
            PLAIN_SMS,
            {
                "from_": "+15551234567",
                "to": "+15005550006",
                "body": "Hello there",
                "num_media": 0,
                "from_city": "SAN FRANCISCO",
                "to_zip": "94105",
                "attachments": [],
                "opt_out": None,
                "name": None,
            },
            id="plain-sms",
        ),
        pytest.param(
            MMS_TWO_MEDIA,
            {
                "from_": "+15551234567",
                "to": "+15005550006",
                "body": "",
                "num_media": 2,
                "from_city": None,
                "to_zip": None,
                "attachments": [
                    {"contentType": "image/jpeg", "contentUrl": MMS_TWO_MEDIA[7][1]},
                    {"contentType": "video/mp4", "contentUrl": MMS_TWO_MEDIA[9][1]},
                ],
                "opt_out": None,
                "name": None,
            },
            id="mms-two-media",
        ),
        pytest.param(
            STOP,
            {
                "from_": "+15551234567",
                "to": "+15005550006",
                "body": "STOP",
                "num_media": 0,
                "from_city": None,
                "to_zip": None,
                "attachments": [],
                "opt_out": "STOP",
                "name": None,
            },
            id="stop",
        ),
        pytest.param(
            WHATSAPP,
            {
                "from_": "whatsapp:+14155238886",
                "to": "whatsapp:+15005550006",
                "body": "¡Hola! 👋",
                "num_media": 0,
                "from_city": None,
                "to_zip": None,
                "attachments": [],
                "opt_out": None,
                "name": "Ana",
            },
            id="whatsapp",
        ),
    ],
)
def test_webhook_form_becomes_message_and_activity(
    form: list[tuple[str, str]], expected: dict[str, Any]
) -> None:
    message = parse_inbound(parse_form(urlencode(form).encode()))
    activity = Activity.from_inbound(message).to_json()

    assert message.from_ == expected["from_"]
    assert message.to == expected["to"]
    assert message.num_media == expected["num_media"]
    assert message.from_place.city == expected["from_city"]
    assert message.to_place.zip == expected["to_zip"]
    assert message.opt_out_type == expected["opt_out"]
    # Microsoft's SMS channel id scheme.
    assert activity["type"] == "message"
    assert activity["id"] == dict(form)["MessageSid"]
    assert activity["channelId"] == "sms"
    assert activity["from"] == (
        {"id": expected["from_"]} | ({"name": expected["name"]} if expected["name"] else {})
    )
    assert activity["recipient"] == {"id": expected["to"]}
    assert activity["conversation"] == {"id": expected["from_"]}
    assert activity["text"] == expected["body"]
    assert activity["attachments"] == expected["attachments"]
    assert activity["channelData"] == dict(form)  # the raw form, unknown fields included
    assert activity["timestamp"].endswith("Z")


def test_message_survives_json_round_trip() -> None:
    from adapter.twilio.messages import InboundMessage

    message = parse_inbound(parse_form(urlencode(MMS_TWO_MEDIA).encode()))
    assert InboundMessage.from_json(message.to_json()) == message


@pytest.mark.parametrize(
    ("form", "error"),
    [
        pytest.param(
            [("AccountSid", ACCOUNT), ("From", "+1555"), ("To", "+1555")],
            "missing MessageSid",
            id="no-sid",
        ),
        pytest.param(
            [("MessageSid", "XX123"), ("AccountSid", ACCOUNT), ("From", "+1"), ("To", "+1")],
            "MessageSid is not a Twilio message SID",
            id="bad-sid",
        ),
        pytest.param(
            [("MessageSid", SMS_SID), ("From", "+1"), ("To", "+1")],
            "missing AccountSid",
            id="no-account",
        ),
        pytest.param(
            [("MessageSid", SMS_SID), ("AccountSid", ACCOUNT), ("To", "+1")],
            "missing From",
            id="no-from",
        ),
        pytest.param(
            [("MessageSid", SMS_SID), ("AccountSid", ACCOUNT), ("From", "+1")],
            "missing To",
            id="no-to",
        ),
        pytest.param(
            [
                ("MessageSid", SMS_SID),
                ("AccountSid", ACCOUNT),
                ("From", "+1"),
                ("To", "+1"),
                ("NumMedia", "x"),
            ],
            "NumMedia is not a whole number from 0 to 10",
            id="bad-num-media",
        ),
        pytest.param(
            [
                ("MessageSid", SMS_SID),
                ("AccountSid", ACCOUNT),
                ("From", "+1"),
                ("To", "+1"),
                ("NumMedia", "11"),
            ],
            "NumMedia is not a whole number from 0 to 10",
            id="too-many-media",
        ),
        pytest.param(
            [
                ("MessageSid", SMS_SID),
                ("AccountSid", ACCOUNT),
                ("From", "+1"),
                ("To", "+1"),
                ("NumMedia", "1"),
            ],
            "missing MediaUrl0",
            id="media-url-missing",
        ),
    ],
)
def test_forms_that_are_not_twilio_webhooks_are_refused(
    form: list[tuple[str, str]], error: str
) -> None:
    with pytest.raises(WebhookFormError, match=error):
        parse_inbound(form)


def _inbound(**changes: str) -> list[tuple[str, str]]:
    fields = dict(PLAIN_SMS) | changes
    return [(name, value) for name, value in fields.items() if value != "<absent>"]


# What a webhook's identity fields may not be: each row would otherwise be stored as a
# text (or, for the first, replay a captured text as a new one).
@pytest.mark.parametrize(
    ("form", "error"),
    [
        pytest.param(
            # The replay: NumMedia=0 moved into the MessageSid signs the same string.
            _inbound(MessageSid=SMS_SID + "NumMedia0", NumMedia="<absent>",
                     SmsMessageSid="<absent>", SmsSid="<absent>"),
            "MessageSid is not a Twilio message SID", id="fields-folded-into-the-sid",
        ),
        pytest.param(
            _inbound(MessageSid="SM" + "A" * 32, SmsMessageSid="<absent>", SmsSid="<absent>"),
            "MessageSid is not", id="upper-case-hex",
        ),
        pytest.param(
            _inbound(MessageSid="SM" + "a" * 31, SmsMessageSid="<absent>", SmsSid="<absent>"),
            "MessageSid is not", id="short-sid",
        ),
        pytest.param(
            _inbound(MessageSid="IM" + "a" * 32, SmsMessageSid="<absent>", SmsSid="<absent>"),
            "MessageSid is not", id="not-a-message-sid",
        ),
        pytest.param(
            _inbound(SmsSid="SM" + "f" * 32), "SmsSid does not match MessageSid",
            id="sms-sid-disagrees",
        ),
        pytest.param(
            _inbound(SmsMessageSid="SM" + "f" * 32), "SmsMessageSid does not match MessageSid",
            id="sms-message-sid-disagrees",
        ),
        pytest.param(
            _inbound(AccountSid="AC1"), "AccountSid is not a Twilio account SID",
            id="short-account",
        ),
        pytest.param(
            _inbound(NumMedia="²"), "NumMedia is not a whole number", id="superscript-digit",
        ),
        pytest.param(
            _inbound(NumSegments="١"), "NumSegments is not a whole number", id="arabic-digit",
        ),
        pytest.param(
            _inbound(NumSegments="9" * 30), "NumSegments is not a whole number", id="huge-count",
        ),
    ],
)  # fmt: skip
def test_identities_and_numbers_are_strict(form: list[tuple[str, str]], error: str) -> None:
    with pytest.raises(WebhookFormError, match=error):
        parse_inbound(form)


@pytest.mark.parametrize(
    ("error_code", "error"),
    [
        ("9" * 30, "ErrorCode is not a whole number"),
        ("３０００７", "ErrorCode is not a whole number"),  # full-width digits
        ("30007²", "ErrorCode is not a whole number"),
        ("-1", "ErrorCode is not a whole number"),
    ],
)
def test_status_callback_numbers_are_ascii_and_in_range(error_code: str, error: str) -> None:
    with pytest.raises(WebhookFormError, match=error):
        parse_status_callback([*CALLBACK, ("MessageStatus", "failed"), ("ErrorCode", error_code)])


def test_status_callback_needs_a_twilio_message_sid() -> None:
    with pytest.raises(WebhookFormError, match="MessageSid is not"):
        parse_status_callback(
            [("MessageSid", "SM1"), ("AccountSid", ACCOUNT), ("MessageStatus", "sent")]
        )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"%" * 1000, "malformed %-escape"),
        (b"Body=100%", "malformed %-escape"),
        (b"Body=%zz", "malformed %-escape"),
        (b"&".join(b"a=1" for _ in range(201)), "more than 200 parameters"),
    ],
)
def test_costly_or_malformed_bodies_are_refused_before_decoding(body: bytes, error: str) -> None:
    with pytest.raises(WebhookFormError, match=error):
        parse_form(body)


def test_escapes_in_either_case_are_fine() -> None:
    assert parse_form(b"Body=%e2%9c%93%E2%9C%93") == [("Body", "✓✓")]


def test_non_utf8_body_is_refused() -> None:
    with pytest.raises(WebhookFormError, match="not UTF-8"):
        parse_form(b"Body=\xff\xfe")


def test_empty_twiml_is_an_empty_response() -> None:
    assert EMPTY_TWIML.decode().endswith("<Response />")


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ([*CALLBACK, ("MessageStatus", "delivered")], "delivered", None),
        ([*CALLBACK, ("SmsStatus", "sent")], "sent", None),
        (
            [*CALLBACK, ("MessageStatus", "undelivered"), ("ErrorCode", "30007")],
            "undelivered",
            30007,
        ),
    ],
)
def test_status_callback_form(form: list[tuple[str, str]], status: str, code: int | None) -> None:
    update = parse_status_callback(form)
    assert (update.message_sid, update.status, update.error_code) == (SMS_SID, status, code)


# --- what a bot reads off `ctx.message`: every field Twilio sends that we parse ---

SERVICE = "MG" + "c" * 32


def _inbound(*extra: tuple[str, str], sid: str = SMS_SID) -> list[tuple[str, str]]:
    return [
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT),
        ("From", "+15551234567"),
        ("To", "+15005550006"),
        ("Body", "hi"),
        *extra,
    ]


def test_an_mms_with_ten_media_twilios_maximum_keeps_every_picture() -> None:
    urls = [f"https://api.twilio.com/Media/ME{index}" for index in range(10)]
    form = _inbound(
        ("NumMedia", "10"),
        *[(f"MediaUrl{index}", url) for index, url in enumerate(urls)],
        *[(f"MediaContentType{index}", "image/png") for index in range(10)],
        sid=MMS_SID,
    )
    message = parse_inbound(parse_form(urlencode(form).encode()))
    assert message.num_media == 10
    assert [media.url for media in message.media] == urls
    assert Activity.from_inbound(message).to_json()["attachments"][9] == {
        "contentType": "image/png",
        "contentUrl": urls[9],
    }


def test_a_medium_without_its_content_type_is_an_octet_stream() -> None:
    form = _inbound(("NumMedia", "1"), ("MediaUrl0", "https://x.example/ME0"), sid=MMS_SID)
    [media] = parse_inbound(form).media
    assert (media.url, media.content_type) == ("https://x.example/ME0", "application/octet-stream")


def test_no_num_media_means_no_media_and_no_num_segments_means_one() -> None:
    message = parse_inbound(_inbound(("MediaUrl0", "https://x.example/ME0")))
    assert (message.num_media, message.media, message.num_segments) == (0, (), 1)


def test_everything_twilio_tells_about_the_sender_reaches_the_bot() -> None:
    form = _inbound(
        ("MessagingServiceSid", SERVICE),
        ("NumSegments", "3"),
        ("FromCity", "SAN FRANCISCO"),
        ("FromState", "CA"),
        ("FromZip", "94105"),
        ("FromCountry", "US"),
        ("ToCity", "TORONTO"),
        ("ToState", "ON"),
        ("ToZip", "M5H"),
        ("ToCountry", "CA"),
        ("WaId", "15551234567"),
        ("ProfileName", "Ana"),
    )
    message = parse_inbound(form)
    assert message.messaging_service_sid == SERVICE  # routing and replies depend on it
    assert message.num_segments == 3
    assert (message.from_place.city, message.from_place.state) == ("SAN FRANCISCO", "CA")
    assert (message.from_place.zip, message.from_place.country) == ("94105", "US")
    assert (message.to_place.city, message.to_place.state) == ("TORONTO", "ON")
    assert (message.to_place.zip, message.to_place.country) == ("M5H", "CA")
    assert (message.wa_id, message.profile_name) == ("15551234567", "Ana")


def test_a_text_without_a_messaging_service_has_none() -> None:
    assert parse_inbound(_inbound(("MessagingServiceSid", " "))).messaging_service_sid is None


@pytest.mark.parametrize("sid", [SMS_SID, MMS_SID], ids=["SM", "MM"])
def test_every_kind_of_message_sid_is_accepted(sid: str) -> None:
    assert parse_inbound(_inbound(sid=sid)).message_sid == sid


@pytest.mark.parametrize(
    "sid",
    ["SM" + "a" * 63, "SM" + "a" * 31 + "-", "AC" + "1" * 32, "sm" + "a" * 32],
    ids=["too-long", "not-alphanumeric", "account-prefix", "lower-case"],
)
def test_message_sids_twilio_never_makes_are_refused(sid: str) -> None:
    with pytest.raises(WebhookFormError, match="MessageSid is not a Twilio message SID"):
        parse_inbound(_inbound(sid=sid))


def test_an_account_sid_must_be_one() -> None:
    form = [*_inbound()]
    form[1] = ("AccountSid", "MG" + "1" * 32)
    with pytest.raises(WebhookFormError, match="AccountSid is not a Twilio account SID"):
        parse_inbound(form)


def test_a_field_longer_than_the_cap_is_refused_and_one_at_the_cap_is_kept() -> None:
    at_cap = "x" * MAX_FIELD_LENGTH
    assert parse_inbound(_inbound(("Note", at_cap))).raw["Note"] == at_cap
    with pytest.raises(WebhookFormError, match="Note is too long"):
        parse_inbound(_inbound(("Note", at_cap + "x")))


def test_a_repeated_field_keeps_the_first_value() -> None:
    assert parse_inbound(_inbound(("Body", "second"))).body == "hi"


def test_segments_beyond_any_real_text_are_refused() -> None:
    assert parse_inbound(_inbound(("NumSegments", "1000"))).num_segments == 1000
    with pytest.raises(WebhookFormError, match="NumSegments is not a whole number from 0 to 1000"):
        parse_inbound(_inbound(("NumSegments", "1001")))


@pytest.mark.parametrize("body", [b"Body=%FF", b"Body=%C3%28"], ids=["lone-ff", "bad-utf8"])
def test_a_percent_escape_that_is_not_utf8_is_refused(body: bytes) -> None:
    with pytest.raises(WebhookFormError, match="body is not UTF-8"):
        parse_form(body)


def test_a_form_keeps_blank_values_and_plus_signs() -> None:
    assert parse_form(b"Body=&From=%2B1555&To=+1") == [
        ("Body", ""),
        ("From", "+1555"),
        ("To", " 1"),
    ]


@pytest.mark.parametrize("sid", [SMS_SID, MMS_SID], ids=["SM", "MM"])
def test_status_callbacks_for_every_kind_of_message(sid: str) -> None:
    form = [
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT),
        ("MessageStatus", "Delivered"),
        ("To", "+15551234567"),
        ("From", "+15005550006"),
    ]
    update = parse_status_callback(form)
    assert (update.message_sid, update.status) == (sid, "delivered")
    assert (update.to, update.from_) == ("+15551234567", "+15005550006")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ([("MessageSid", SMS_SID)], "missing MessageStatus"),
        ([("MessageSid", SMS_SID), ("MessageStatus", " ")], "missing MessageStatus"),
        ([("MessageStatus", "sent")], "missing MessageSid"),
        (
            [
                ("MessageSid", SMS_SID),
                ("AccountSid", ACCOUNT),
                ("MessageStatus", "failed"),
                ("ErrorCode", "3000x"),
            ],
            "ErrorCode is not a whole number",
        ),
    ],
    ids=["no-status", "blank-status", "no-sid", "bad-error-code"],
)
def test_status_callbacks_that_are_not_twilios_are_refused(
    form: list[tuple[str, str]], error: str
) -> None:
    with pytest.raises(WebhookFormError, match=error):
        parse_status_callback(form)


def test_message_status_wins_over_the_older_sms_status() -> None:
    form = [
        ("MessageSid", SMS_SID),
        ("AccountSid", ACCOUNT),
        ("SmsStatus", "sent"),
        ("MessageStatus", "delivered"),
    ]
    assert parse_status_callback(form).status == "delivered"


def test_a_picture_with_no_body_field_is_an_empty_text_not_none() -> None:
    form = [pair for pair in _inbound(("NumMedia", "0")) if pair[0] != "Body"]
    message = parse_inbound(form)
    assert message.body == ""
    assert Activity.from_inbound(message).to_json()["text"] == ""


def test_a_sloppy_form_is_read_as_far_as_it_goes() -> None:
    # An empty piece or a name without "=" (a proxy's doing, never Twilio's) is skipped or
    # kept blank rather than refusing the whole text.
    assert parse_form(b"Body=hi&&From=%2B1&flag") == [("Body", "hi"), ("From", "+1"), ("flag", "")]


_form_text = st.text(st.sampled_from("ab+%&=\\\\ é😀\x00x;#"), max_size=10)


@settings(max_examples=400, deadline=None)
@given(pairs=st.lists(st.tuples(_form_text, _form_text), max_size=6), raw=st.binary(max_size=40))
def test_parse_form_gives_what_parse_qsl_gives(pairs: list[tuple[str, str]], raw: bytes) -> None:
    for body in (urlencode(pairs).encode(), urlencode(pairs, safe="&=%+").encode(), raw):
        try:
            expected = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            expected = None
        try:
            got = parse_form(body)
        except WebhookFormError:
            got = None
        if got is not None:
            assert got == expected, body
        else:
            # Refused where parse_qsl is lenient only for a malformed %-escape (which
            # parse_qsl keeps as text) or bytes that are not UTF-8.
            assert expected is None or re.search(rb"%(?![0-9A-Fa-f]{2})", body), body
