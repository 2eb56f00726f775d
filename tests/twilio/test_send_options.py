"""Send Message's options: each checked where it is written, each sent as Twilio's form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from adapter.twilio.messages import OutboundMessage
from adapter.twilio.send_options import InvalidSendOption, SendOptions

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
SERVICE = "MG" + "a" * 32
TEMPLATE = "HX" + "b" * 32


@pytest.mark.parametrize(
    ("given", "argument", "message"),
    [
        ({"validity_period": 0}, "validity_period", "outside Twilio's range of 1 to 36,000"),
        ({"validity_period": 36_001}, "validity_period", "36001 s is outside"),
        ({"validity_period": 1.5}, "validity_period", "must be seconds"),
        ({"validity_period": True}, "validity_period", "must be seconds"),
        ({"validity_period": timedelta(seconds=1.5)}, "validity_period", "whole number"),
        ({"max_price": 0.05}, "max_price", 'a decimal string like "0.05"'),
        ({"max_price": "cheap"}, "max_price", "a decimal string"),
        ({"max_price": "-1"}, "max_price", "negative"),
        ({"smart_encoded": "yes"}, "smart_encoded", "True or False"),
        ({"send_as_mms": 1}, "send_as_mms", "True or False"),
        ({"send_at": datetime(2027, 1, 1, 9)}, "send_at", "aware datetime"),
        ({"content_sid": "HX123"}, "content_sid", "not a Content SID"),
        ({"content_variables": {"1": "x"}}, "content_variables", "needs content_sid"),
        (
            {"content_sid": TEMPLATE, "content_variables": {"1": object()}},
            "content_variables",
            "cannot be sent as JSON",
        ),
        ({"content_sid": TEMPLATE, "content_variables": {1: "x"}}, "content_variables", "key 1"),
    ],
)
def test_a_bad_option_is_refused_naming_the_argument(
    given: dict[str, Any], argument: str, message: str
) -> None:
    with pytest.raises(InvalidSendOption, match=message) as refused:
        SendOptions.of(**given)
    assert refused.value.argument == argument
    assert str(refused.value).startswith(f"{argument}: ")


@pytest.mark.parametrize(
    ("options", "service", "argument", "message"),
    [
        (SendOptions(send_at=NOW + timedelta(hours=1)), None, "send_at", "Messaging Service"),
        (SendOptions(send_at=NOW + timedelta(minutes=4)), SERVICE, "send_at", "5 minutes to 35"),
        (SendOptions(send_at=NOW + timedelta(days=36)), SERVICE, "send_at", "5 minutes to 35"),
        (SendOptions(send_at=NOW - timedelta(hours=1)), SERVICE, "send_at", "in the past"),
        (SendOptions(shorten_urls=True), None, "shorten_urls", "Messaging Service"),
    ],
)
def test_scheduling_and_link_shortening_need_a_service_and_the_window(
    options: SendOptions, service: str | None, argument: str, message: str
) -> None:
    with pytest.raises(InvalidSendOption, match=message) as refused:
        options.check_sender(messaging_service_sid=service, now=NOW)
    assert refused.value.argument == argument


def test_the_window_edges_are_accepted() -> None:
    for ahead in (timedelta(minutes=5), timedelta(days=35)):
        SendOptions(send_at=NOW + ahead).check_sender(messaging_service_sid=SERVICE, now=NOW)


def test_every_option_becomes_twilios_form_parameter() -> None:
    paris = timezone(timedelta(hours=1))
    options = SendOptions.of(
        validity_period=timedelta(minutes=10),
        max_price=Decimal("0.05"),
        smart_encoded=True,
        shorten_urls=False,
        send_as_mms=True,
        send_at=datetime(2027, 1, 5, 10, 30, 15, 999, tzinfo=paris),
        content_sid=TEMPLATE,
        content_variables={"1": "Ana", "2": 3},
    )

    assert options.form() == {
        "ValidityPeriod": "600",
        "MaxPrice": "0.05",
        "SmartEncoded": "true",
        "ShortenUrls": "false",
        "SendAsMms": "true",
        "ScheduleType": "fixed",
        "SendAt": "2027-01-05T09:30:15Z",
        "ContentSid": TEMPLATE,
        "ContentVariables": '{"1": "Ana", "2": 3}',
    }
    assert options.form(remaining_validity=42)["ValidityPeriod"] == "42"
    assert SendOptions().form() == {}


def test_options_survive_the_outbox_json_round_trip() -> None:
    options = SendOptions(
        validity_period=600,
        smart_encoded=True,
        send_at=datetime(2027, 1, 5, 9, 30, tzinfo=UTC),
        content_sid=TEMPLATE,
        content_variables={"1": "Ana"},
    )
    message = OutboundMessage(to="+15551234567", body="", messaging_service_sid=SERVICE)
    with_options = OutboundMessage(
        to="+15551234567", body="", messaging_service_sid=SERVICE, options=options
    )

    assert OutboundMessage.from_json(with_options.to_json()) == with_options
    # A message without options keeps the payload it always had (older rows read back).
    assert "options" not in message.to_json()
    assert OutboundMessage.from_json(message.to_json()).options == SendOptions()


def test_reply_options_fill_in_over_route_defaults() -> None:
    defaults = SendOptions(validity_period=900, smart_encoded=True)
    merged = SendOptions(validity_period=60).merged_over(defaults)
    assert (merged.validity_period, merged.smart_encoded) == (60, True)


def test_unknown_names_in_a_mapping_are_refused() -> None:
    with pytest.raises(InvalidSendOption, match="unknown send option"):
        SendOptions.from_mapping({"validity": 600}, where="send.")
    parsed = SendOptions.from_mapping({"send_at": "2027-01-05T09:30:00Z"}, where="")
    assert parsed.send_at == datetime(2027, 1, 5, 9, 30, tzinfo=UTC)
    with pytest.raises(InvalidSendOption, match="no UTC offset"):
        SendOptions.from_mapping({"send_at": "2027-01-05T09:30:00"}, where="")


def test_a_message_with_a_template_is_still_hashable() -> None:
    options = SendOptions(content_sid=TEMPLATE, content_variables={"1": "Ana"})
    message = OutboundMessage(to="+15551234567", body="", from_="+15005550006", options=options)
    assert message in {message}
