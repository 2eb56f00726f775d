"""The /_emulator dev tools: a person texting in (a signed webhook to the adapter), every
message at a glance, and seeded histories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.devtools.emulator.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES,
    OUR_NUMBER,
    PERSON,
    Emulator,
    Receiver,
    make_config,
    running_emulator,
)

INBOUND = "/_emulator/inbound"


@pytest.fixture
async def wired(receiver: Receiver) -> AsyncIterator[Emulator]:
    """An emulator whose webhook_url is the receiver's /api/sms."""
    async with running_emulator(make_config(webhook_url=receiver.url("/api/sms"))) as emulator:
        yield emulator


async def text_in(emulator: Emulator, **fields: Any) -> dict[str, Any]:
    response = await emulator.client.post(INBOUND, json=fields)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_text_posts_twilios_signed_webhook(wired: Emulator, receiver: Receiver) -> None:
    answer = await text_in(wired, From=PERSON, Body="Hello there")

    webhook = await receiver.next()
    sid = answer["sid"]
    assert answer == {
        "sid": sid,
        "webhook_status": 200,
        "webhook_error": None,
        "webhook_attempts": 1,
    }
    assert RequestValidator(AUTH_TOKEN).validate(
        receiver.url("/api/sms"), webhook.fields, webhook.headers["x-twilio-signature"]
    )
    assert webhook.form == [
        ("ToCountry", "US"),
        ("ToState", ""),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", sid),
        ("FromState", ""),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", "Hello there"),
        ("FromCountry", "US"),
        ("To", OUR_NUMBER),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", PERSON),
        ("ApiVersion", "2010-04-01"),
    ]


async def test_the_text_is_recorded_as_a_received_inbound_message(
    wired: Emulator, receiver: Receiver
) -> None:
    sid = (await text_in(wired, From=PERSON, Body="hi"))["sid"]

    listed = (await wired.client.get(MESSAGES, params={"From": PERSON})).json()["messages"]

    assert [(m["sid"], m["direction"], m["status"], m["to"]) for m in listed] == [
        (sid, "inbound", "received", OUR_NUMBER)
    ]
    assert listed[0]["date_sent"] is not None


async def test_media_arrive_numbered_with_their_types(wired: Emulator, receiver: Receiver) -> None:
    # A form, as curl -d sends it, with a repeated MediaUrl.
    response = await wired.client.post(
        INBOUND,
        data={
            "From": PERSON,
            "MediaUrl": ["https://example.com/cat.jpg", "https://example.com/clip"],
            "MediaContentType": ["image/jpeg", "video/mp4"],
        },
    )

    webhook = (await receiver.next()).fields
    sid = response.json()["sid"]
    assert sid.startswith("MM")
    assert (webhook["NumMedia"], webhook["Body"]) == ("2", "")
    # Like Twilio, the webhook links to the emulator's own copy, at Twilio's Media path.
    media_path = f"http://emulator/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media/ME"
    assert webhook["MediaUrl0"].startswith(media_path)
    assert webhook["MediaUrl1"].startswith(media_path)
    assert webhook["MediaUrl0"] != webhook["MediaUrl1"]
    assert (webhook["MediaContentType0"], webhook["MediaContentType1"]) == (
        "image/jpeg",
        "video/mp4",
    )


async def test_media_types_are_guessed_when_not_given(wired: Emulator, receiver: Receiver) -> None:
    await text_in(wired, From=PERSON, MediaUrl="https://example.com/photo.png?size=large")

    webhook = (await receiver.next()).fields
    assert webhook["MediaContentType0"] == "image/png"


async def test_whatsapp_texts_carry_profile_and_wa_id(wired: Emulator, receiver: Receiver) -> None:
    await text_in(wired, From="whatsapp:+4915112345678", Body="¡Hola! 👋", ProfileName="Ana")

    webhook = (await receiver.next()).fields
    assert (webhook["To"], webhook["From"]) == ("whatsapp:" + OUR_NUMBER, "whatsapp:+4915112345678")
    assert (webhook["ProfileName"], webhook["WaId"], webhook["FromCountry"]) == (
        "Ana",
        "4915112345678",
        "DE",
    )


@pytest.mark.parametrize(
    ("body", "opt_out"),
    [
        pytest.param("STOP", "STOP", id="stop"),
        pytest.param(" unsubscribe ", "STOP", id="stop-synonym-any-case"),
        pytest.param("start", "START", id="start"),
        pytest.param("HELP", "HELP", id="help"),
        pytest.param("please stop", None, id="not-a-keyword"),
    ],
)
async def test_opt_out_keywords_are_flagged(
    wired: Emulator, receiver: Receiver, body: str, opt_out: str | None
) -> None:
    await text_in(wired, From=PERSON, Body=body)

    webhook = (await receiver.next()).fields
    assert webhook.get("OptOutType") == opt_out


async def test_redelivery_posts_the_same_webhook_again(wired: Emulator, receiver: Receiver) -> None:
    sid = (await text_in(wired, From=PERSON, Body="once"))["sid"]
    again = await text_in(wired, MessageSid=sid)

    first, second = await receiver.next(), await receiver.next()
    assert again["sid"] == sid
    assert first.form == second.form
    assert first.headers["x-twilio-signature"] == second.headers["x-twilio-signature"]
    assert len(wired.state.messages()) == 1


async def test_the_adapters_answer_is_reported(wired: Emulator, receiver: Receiver) -> None:
    receiver.status = 403

    answer = await text_in(wired, From=PERSON, Body="hi")

    assert (answer["webhook_status"], answer["webhook_error"]) == (403, None)


async def test_without_a_webhook_url_the_text_is_only_recorded(emulator: Emulator) -> None:
    answer = await text_in(emulator, From=PERSON, Body="hi")

    assert answer["webhook_status"] is None
    assert "webhook_url" in answer["webhook_error"]
    assert emulator.state.get(answer["sid"]) is not None


async def test_an_unreachable_adapter_is_reported_not_raised() -> None:
    config = make_config(webhook_url="http://127.0.0.1:9/api/sms")
    async with running_emulator(config) as emulator:
        answer = await text_in(emulator, From=PERSON, Body="hi")

    assert answer["webhook_status"] is None
    assert answer["webhook_error"].startswith("ConnectError")


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        pytest.param({"Body": "no sender"}, 400, id="missing-from"),
        pytest.param({"From": "5551234567"}, 400, id="from-not-e164"),
        pytest.param({"From": PERSON, "To": "+15559999999"}, 400, id="to-not-ours"),
        pytest.param({"From": "whatsapp:" + PERSON, "To": OUR_NUMBER}, 400, id="mixed-channels"),
        pytest.param(
            {
                "From": PERSON,
                "MediaUrl": ["https://e.com/a", "https://e.com/b"],
                "MediaContentType": "image/png",
            },
            400,
            id="fewer-types-than-media",
        ),
        pytest.param({"MessageSid": "SM" + "0" * 32}, 404, id="redeliver-unknown"),
    ],
)
async def test_bad_simulations_are_refused(
    emulator: Emulator, fields: dict[str, Any], status: int
) -> None:
    response = await emulator.client.post(INBOUND, json=fields)

    assert response.status_code == status
    assert response.json()["error"]
    assert emulator.state.messages() == []


async def test_only_inbound_texts_can_be_redelivered(emulator: Emulator) -> None:
    outbound = (await emulator.send(Body="ours")).json()["sid"]

    response = await emulator.client.post(INBOUND, json={"MessageSid": outbound})

    assert response.status_code == 404


async def test_the_console_lists_both_directions_oldest_first(emulator: Emulator) -> None:
    inbound = (await text_in(emulator, From=PERSON, Body="question"))["sid"]
    outbound = (await emulator.send(Body="answer", MediaUrl="https://example.com/a.gif")).json()[
        "sid"
    ]

    everything = (await emulator.client.get("/_emulator/messages", auth=None)).json()
    ours = (await emulator.client.get("/_emulator/messages", params={"from": OUR_NUMBER})).json()

    assert [m["sid"] for m in everything] == [inbound, outbound]
    assert everything[1]["media"] == [
        {"url": "https://example.com/a.gif", "content_type": "image/gif"}
    ]
    assert [m["sid"] for m in ours] == [outbound]


async def test_the_console_can_forget_everything(emulator: Emulator) -> None:
    await text_in(emulator, From=PERSON, Body="one")

    cleared = (await emulator.client.delete("/_emulator/messages")).json()

    assert cleared == {"cleared": 1}
    assert emulator.state.messages() == []


async def test_seeding_a_long_conversation(emulator: Emulator) -> None:
    response = await emulator.client.post(
        "/_emulator/seed",
        json={"ours": OUR_NUMBER, "person": PERSON, "count": 100, "start": "2024-03-01T00:00:00"},
    )

    messages = emulator.state.messages()
    # Without an interval, 100 texts share three days: 43.2 minutes apart.
    assert response.json() == {
        "created": 100,
        "oldest": "2024-03-01T00:00:00+00:00",
        "newest": "2024-03-03T23:16:48+00:00",
    }
    assert messages[-1].date_created.isoformat() == "2024-03-03T23:16:48+00:00"
    assert len(messages) == 100
    assert {m.from_ for m in messages} == {OUR_NUMBER, PERSON}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"ours": OUR_NUMBER, "person": PERSON, "count": -1}, id="negative-count"),
        pytest.param({"ours": OUR_NUMBER, "person": PERSON, "count": True}, id="bool-count"),
        pytest.param({"ours": OUR_NUMBER, "count": 5}, id="no-person"),
        pytest.param(
            {"ours": OUR_NUMBER, "person": PERSON, "count": 5, "start": "soon"}, id="bad-start"
        ),
        pytest.param(
            {"ours": OUR_NUMBER, "person": PERSON, "count": 5, "interval_seconds": 0},
            id="zero-interval",
        ),
        pytest.param([1, 2], id="not-an-object"),
    ],
)
async def test_bad_seeds_are_refused(emulator: Emulator, body: Any) -> None:
    response = await emulator.client.post("/_emulator/seed", json=body)

    assert response.status_code == 400
    assert emulator.state.messages() == []


async def test_a_raw_plus_from_curl_is_understood(emulator: Emulator) -> None:
    # `curl -d From=+15551234567` sends the "+" unencoded; form decoding makes it a space.
    response = await emulator.client.post(
        INBOUND,
        content=b"From=+15551234567&To=+15005550006&Body=hi+there",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    listed = await emulator.client.get("/_emulator/messages?from=+15551234567")

    assert response.status_code == 200, response.text
    assert [(m["from"], m["to"], m["body"]) for m in listed.json()] == [
        (PERSON, OUR_NUMBER, "hi there")
    ]
