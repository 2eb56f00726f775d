"""Messaging Services: numbers grouped under an MG... SID. Texts to those numbers carry
MessagingServiceSid, and a send through the service goes from its first number."""

from __future__ import annotations

from typing import Any

import pytest

from tests.devtools.emulator.conftest import (
    MESSAGES,
    OUR_NUMBER,
    PERSON,
    Receiver,
    make_config,
    running_emulator,
)

SERVICE = "MG" + "6" * 32
SERVICE_NUMBER = "+15005550009"


async def test_texts_to_a_services_number_carry_its_sid(receiver: Receiver) -> None:
    config = make_config(
        webhook_url=receiver.url("/api/sms"),
        numbers=[OUR_NUMBER, SERVICE_NUMBER],
        messaging_services={SERVICE: [SERVICE_NUMBER]},
    )
    async with running_emulator(config) as emulator:
        for to in (SERVICE_NUMBER, OUR_NUMBER):
            answer = await emulator.client.post(
                "/_emulator/inbound", json={"From": PERSON, "To": to, "Body": "hi"}
            )
            assert answer.status_code == 200
        to_service, to_plain_number = (await receiver.next()).fields, (await receiver.next()).fields

    assert to_service["MessagingServiceSid"] == SERVICE
    assert "MessagingServiceSid" not in to_plain_number


async def test_a_send_through_the_service_goes_from_its_first_number() -> None:
    config = make_config(
        numbers=[OUR_NUMBER, SERVICE_NUMBER], messaging_services={SERVICE: [SERVICE_NUMBER]}
    )
    async with running_emulator(config) as emulator:
        created = await emulator.client.post(
            MESSAGES, data={"To": PERSON, "MessagingServiceSid": SERVICE, "Body": "hi"}
        )
        await emulator.state.settle()
        stored = emulator.state.get(created.json()["sid"])

    assert created.json()["status"] == "accepted" and created.json()["from"] is None
    assert stored is not None
    assert (stored.from_, stored.messaging_service_sid, stored.status) == (
        SERVICE_NUMBER,
        SERVICE,
        "delivered",
    )


@pytest.mark.parametrize(
    ("services", "message"),
    [
        pytest.param({"MG123": [OUR_NUMBER]}, "MG and 32 hex digits", id="bad-sid"),
        pytest.param({SERVICE: ["+15559990000"]}, "not ours", id="number-not-ours"),
        pytest.param({SERVICE: []}, "needs numbers", id="empty"),
    ],
)
def test_unworkable_services_are_refused(services: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config(messaging_services=services)


async def test_the_messaging_api_serves_a_service_and_its_numbers() -> None:
    """Fetch Service and its PhoneNumbers (Messaging API v1), in Twilio's shapes."""
    config = make_config(
        webhook_url="https://bot.example.com/api/sms",
        numbers=[OUR_NUMBER, SERVICE_NUMBER],
        messaging_services={SERVICE: [SERVICE_NUMBER, OUR_NUMBER]},
    )
    async with running_emulator(config) as emulator:
        service = (await emulator.client.get(f"/v1/Services/{SERVICE}")).json()
        numbers = (await emulator.client.get(f"/v1/Services/{SERVICE}/PhoneNumbers")).json()
        page = (await emulator.client.get(f"/v1/Services/{SERVICE}/PhoneNumbers?PageSize=1")).json()
        missing = await emulator.client.get(f"/v1/Services/MG{'0' * 32}")
        unauthenticated = await emulator.client.get(f"/v1/Services/{SERVICE}", auth=("AC1", "x"))

    assert service["sid"] == SERVICE
    assert service["inbound_request_url"] == "https://bot.example.com/api/sms"
    assert (service["inbound_method"], service["use_inbound_webhook_on_number"]) == ("POST", False)
    assert [n["phone_number"] for n in numbers["phone_numbers"]] == [SERVICE_NUMBER, OUR_NUMBER]
    assert numbers["meta"]["next_page_url"] is None
    assert page["meta"]["next_page_url"].endswith("PageSize=1&Page=1")
    assert missing.status_code == 404 and missing.json()["code"] == 20404
    assert unauthenticated.status_code == 401
