"""Send Message's options in the emulator: each kept on the message, each honoured as
Twilio documents it, and Twilio's error for each invalid value."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from adapter.devtools.emulator import EmulatorState, create_emulator_app, parse_faults
from adapter.devtools.emulator.state import StoredMessage
from tests.devtools.emulator.conftest import (
    MESSAGES,
    OUR_NUMBER,
    Emulator,
    Receiver,
    make_config,
    running_emulator,
)
from tests.servers import wait_for

SERVICE = "MG" + "4" * 32
TEMPLATE = "HX" + "5" * 32
APP = "AP" + "6" * 32
TEMPLATES = {TEMPLATE: "Hi {{1}}, your order {{2}} ships {{3}}."}


def iso(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture
async def emulator() -> Any:
    async with running_emulator(make_config(content_templates=TEMPLATES)) as running:
        yield running


def message_url(sid: str) -> str:
    return MESSAGES.removesuffix(".json") + f"/{sid}.json"


async def fetch(emulator: Emulator, sid: str) -> dict[str, Any]:
    response = await emulator.client.get(message_url(sid))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_the_message_resource_keeps_the_options_it_was_sent_with(
    emulator: Emulator,
) -> None:
    sent = await emulator.send(
        Body="Your code is 123456",
        ValidityPeriod="600",
        MaxPrice="0.05",
        SmartEncoded="true",
        SendAsMms="false",
        MessagingServiceSid=SERVICE,
        ShortenUrls="true",
    )
    assert sent.status_code == 201, sent.text
    message = await fetch(emulator, sent.json()["sid"])
    assert {k: message.get(k) for k in ("validity_period", "max_price", "smart_encoded")} == {
        "validity_period": 600,
        "max_price": "0.05",
        "smart_encoded": True,
    }
    assert (message["send_as_mms"], message["shorten_urls"]) == (False, True)
    plain = await fetch(emulator, (await emulator.send(Body="plain")).json()["sid"])
    assert "validity_period" not in plain and "send_at" not in plain


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"ValidityPeriod": "0"}, 21624),
        ({"ValidityPeriod": "36001"}, 21624),
        ({"ValidityPeriod": "ten"}, 21624),
        ({"MaxPrice": "cheap"}, 20001),
        ({"SmartEncoded": "maybe"}, 20001),
        ({"ShortenUrls": "true"}, 20001),  # without a Messaging Service
        ({"ScheduleType": "fixed"}, 35111),  # without SendAt
        ({"ScheduleType": "weekly", "SendAt": "2030-01-01T00:00:00Z"}, 20001),
        ({"ScheduleType": "fixed", "SendAt": "in an hour", "MessagingServiceSid": SERVICE}, 35114),
        ({"ContentVariables": '{"1": "x"}'}, 21654),
        ({"ContentSid": "HX" + "0" * 32}, 21655),  # not a template of this account
        ({"ContentSid": TEMPLATE, "ContentVariables": "not json"}, 21656),
        ({"ContentSid": TEMPLATE, "ContentVariables": '{"1": ""}'}, 21656),
        ({"ApplicationSid": "AP123"}, 20001),
        ({"ApplicationSid": APP}, 21420),  # not an App of this account
    ],
)
async def test_invalid_values_get_twilios_errors(
    emulator: Emulator, form: dict[str, str], code: int
) -> None:
    response = await emulator.send(**form)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    assert emulator.state.messages() == []


async def test_scheduling_needs_a_service_and_a_time_in_the_window(emulator: Emulator) -> None:
    now = emulator.state.clock()
    no_service = await emulator.send(ScheduleType="fixed", SendAt=iso(now + timedelta(hours=1)))
    assert no_service.json()["code"] == 35118
    for ahead in (timedelta(minutes=4), timedelta(days=36)):
        refused = await emulator.send(
            ScheduleType="fixed", SendAt=iso(now + ahead), MessagingServiceSid=SERVICE
        )
        assert refused.json()["code"] == 35114, ahead


async def test_a_scheduled_message_waits_for_its_time_then_goes_out(emulator: Emulator) -> None:
    send_at = emulator.state.clock() + timedelta(hours=2)
    sent = await emulator.send(
        From="", MessagingServiceSid=SERVICE, ScheduleType="fixed", SendAt=iso(send_at)
    )
    assert sent.status_code == 201, sent.text
    sid = sent.json()["sid"]
    assert sent.json()["status"] == "scheduled"
    assert (sent.json()["schedule_type"], sent.json()["send_at"]) == ("fixed", iso(send_at))

    await asyncio.sleep(0.2)  # time for the emulator to act, were it to
    assert (await fetch(emulator, sid))["status"] == "scheduled"

    emulator.state.advance(timedelta(hours=1, minutes=59))
    await asyncio.sleep(0.2)  # time for the emulator to act, were it to
    assert (await fetch(emulator, sid))["status"] == "scheduled"

    moved = await emulator.client.post("/_emulator/clock", data={"advance_seconds": "61"})
    assert moved.status_code == 200

    def delivered() -> StoredMessage | None:
        message = emulator.state.get(sid)
        return message if message is not None and message.status == "delivered" else None

    done = await wait_for(delivered)
    assert done.from_ == OUR_NUMBER  # the service's sender
    assert done.date_sent is not None and done.date_sent >= send_at


async def test_a_scheduled_message_can_be_canceled_and_then_never_goes_out(
    emulator: Emulator,
) -> None:
    send_at = emulator.state.clock() + timedelta(minutes=30)
    sid = (
        await emulator.send(MessagingServiceSid=SERVICE, ScheduleType="fixed", SendAt=iso(send_at))
    ).json()["sid"]

    canceled = await emulator.client.post(message_url(sid), data={"Status": "canceled"})
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    again = await emulator.client.post(message_url(sid), data={"Status": "canceled"})
    assert (again.status_code, again.json()["code"]) == (400, 30409)

    emulator.state.advance(timedelta(hours=1))
    await asyncio.sleep(0.2)  # time for the emulator to act, were it to
    assert (await fetch(emulator, sid))["status"] == "canceled"


async def test_a_message_not_scheduled_cannot_be_canceled(emulator: Emulator) -> None:
    sid = (await emulator.send(Body="now")).json()["sid"]
    refused = await emulator.client.post(message_url(sid), data={"Status": "canceled"})
    assert (refused.status_code, refused.json()["code"]) == (400, 30409)


async def test_a_message_whose_validity_runs_out_in_the_queue_fails_with_30036(
    receiver: Receiver,
) -> None:
    # The emulator holds each message 1.1 s in its queue (--latency-ms 1100).
    config = make_config(latency_ms=1100)
    async with running_emulator(config) as emulator:
        expiring = await emulator.send(
            Body="code 1", ValidityPeriod="1", StatusCallback=receiver.url("/status")
        )
        lasting = await emulator.send(Body="code 2", ValidityPeriod="60")
        expiring_sid, lasting_sid = expiring.json()["sid"], lasting.json()["sid"]
        await emulator.state.settle()

        failed = emulator.state.get(expiring_sid)
        assert failed is not None
        assert (failed.status, failed.error_code, failed.date_sent) == ("failed", 30036, None)
        kept = emulator.state.get(lasting_sid)
        assert kept is not None and kept.status == "delivered"
    statuses = [r.fields["MessageStatus"] for r in receiver.requests]
    assert statuses == ["queued", "failed"]
    assert receiver.requests[-1].fields["ErrorCode"] == "30036"


async def test_validity_ages_with_the_emulators_clock_while_a_slow_fault_holds_it() -> None:
    config = make_config(faults=parse_faults("slow=1,slow_ms=300"))
    async with running_emulator(config) as emulator:
        sid = (await emulator.send(Body="held", ValidityPeriod="5")).json()["sid"]
        emulator.state.advance(timedelta(seconds=10))  # the clock runs on while it is held
        await emulator.state.settle()
        message = emulator.state.get(sid)
        assert message is not None and message.error_code == 30036


async def test_a_content_template_is_rendered_with_its_variables(emulator: Emulator) -> None:
    sent = await emulator.send(
        Body="",
        ContentSid=TEMPLATE,
        ContentVariables=json.dumps({"1": "Ana", "2": "#1042"}),
    )
    assert sent.status_code == 201, sent.text
    message = sent.json()
    # A placeholder without a value stays as the template writes it.
    assert message["body"] == "Hi Ana, your order #1042 ships {{3}}."
    assert message["content_sid"] == TEMPLATE
    assert json.loads(message["content_variables"]) == {"1": "Ana", "2": "#1042"}


async def test_smart_encoding_swaps_look_alikes_and_saves_segments(emulator: Emulator) -> None:
    text = "\u201cThanks!\u201d \u2013 we\u2019ll text you when it ships\u2026 " * 3
    plain = (await emulator.send(Body=text)).json()
    smart = (await emulator.send(Body=text, SmartEncoded="true")).json()
    assert plain["body"] == text and plain["num_segments"] == "2"  # 129 UCS-2 characters
    assert smart["body"] == '"Thanks!" - we\'ll text you when it ships... ' * 3
    assert smart["num_segments"] == "1"


async def test_application_sid_sends_statuses_to_the_apps_callback_url(
    receiver: Receiver,
) -> None:
    config = make_config(applications={APP: receiver.url("/app-status")})
    async with running_emulator(config) as emulator:
        sent = await emulator.send(Body="hi", ApplicationSid=APP)
        assert sent.json()["application_sid"] == APP
        # Twilio: StatusCallback, when given too, wins over the App's URL.
        await emulator.send(
            Body="both", ApplicationSid=APP, StatusCallback=receiver.url("/own-status")
        )
        await emulator.state.settle()
    paths = {(r.url.rsplit("/", 1)[1], r.fields["MessageStatus"]) for r in receiver.requests}
    assert ("app-status", "delivered") in paths and ("own-status", "delivered") in paths
    assert len(receiver.requests) == 6  # queued, sent, delivered: each to one URL


async def test_the_clock_endpoint_shows_and_advances_the_emulators_time() -> None:
    state = EmulatorState()
    app = create_emulator_app(make_config(), state)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://emulator"
    ) as client:
        before = (await client.get("/_emulator/clock")).json()["now"]
        moved = (await client.post("/_emulator/clock", json={"advance_seconds": 3600})).json()
        bad = await client.post("/_emulator/clock", json={"advance_seconds": -1})
        worse = await client.post("/_emulator/clock", data={"advance_seconds": "soon"})
    await state.aclose()
    gap = datetime.fromisoformat(moved["now"]) - datetime.fromisoformat(before)
    assert timedelta(hours=1) <= gap < timedelta(hours=1, seconds=5)
    assert bad.status_code == 400 and "advance_seconds" in bad.json()["error"]
    assert worse.status_code == 400
