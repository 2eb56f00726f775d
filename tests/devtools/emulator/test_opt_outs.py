"""Opt-out as Twilio has it on SMS: after STOP, sends to that person from that number (or
its Messaging Service) answer 400 with error 21610, until START."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.devtools.emulator.conftest import (
    MESSAGES,
    OUR_NUMBER,
    PERSON,
    Emulator,
    make_config,
    running_emulator,
)

INBOUND = "/_emulator/inbound"
OTHER_NUMBER = "+15005550007"
OTHER_PERSON = "+15557654321"
SERVICE = "MG" + "5" * 32


async def text_in(emulator: Emulator, body: str, **fields: str) -> None:
    answer = await emulator.client.post(INBOUND, json={"From": PERSON, "Body": body, **fields})
    assert answer.status_code == 200, answer.text


async def assert_refused_21610(emulator: Emulator, **form: str) -> None:
    answer = await emulator.send(**form)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == 21610
    assert answer.json()["message"] == "Attempt to send to unsubscribed recipient"


@pytest.mark.parametrize(
    "keyword",
    [
        "STOP",
        "stop",
        " Stop ",
        "STOPALL",
        "UNSUBSCRIBE",
        "CANCEL",
        "END",
        "QUIT",
        "REVOKE",
        "OPTOUT",
    ],
)
async def test_after_stop_sends_to_that_person_are_refused(
    emulator: Emulator, keyword: str
) -> None:
    await text_in(emulator, keyword)

    await assert_refused_21610(emulator, Body="are you there?")
    # Nothing was created: only the STOP and Twilio's own confirmation of it are listed.
    assert [m.direction for m in emulator.state.messages()] == ["inbound", "outbound-reply"]


@pytest.mark.parametrize("keyword", ["START", "yes", "Unstop"])
async def test_start_lets_sends_through_again(emulator: Emulator, keyword: str) -> None:
    await text_in(emulator, "STOP")
    await text_in(emulator, keyword)

    answer = await emulator.send(Body="welcome back")

    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    "body", ["please stop", "HELP", "stop it", "S T O P"], ids=lambda body: body
)
async def test_other_texts_change_nothing(emulator: Emulator, body: str) -> None:
    await text_in(emulator, body)

    assert (await emulator.send(Body="hi")).status_code == 201


async def test_a_stop_is_for_one_person_and_one_number() -> None:
    async with running_emulator(make_config(numbers=[OUR_NUMBER, OTHER_NUMBER])) as emulator:
        await text_in(emulator, "STOP", To=OUR_NUMBER)

        other_person = await emulator.send(To=OTHER_PERSON, Body="hi")
        other_number = await emulator.send(From=OTHER_NUMBER, Body="hi")
        await assert_refused_21610(emulator, From=OUR_NUMBER, Body="hi")

    assert (other_person.status_code, other_number.status_code) == (201, 201)


async def test_whatsapp_keeps_opt_out_to_the_business(emulator: Emulator) -> None:
    whatsapp = "whatsapp:" + PERSON
    await text_in(emulator, "STOP", From=whatsapp)

    answer = await emulator.send(From="whatsapp:" + OUR_NUMBER, To=whatsapp, Body="hi")

    assert answer.status_code == 201, answer.text


@pytest.fixture
async def with_service() -> AsyncIterator[Emulator]:
    config = make_config(
        numbers=[OUR_NUMBER, OTHER_NUMBER], messaging_services={SERVICE: [OTHER_NUMBER, OUR_NUMBER]}
    )
    async with running_emulator(config) as emulator:
        yield emulator


async def test_a_stop_to_a_services_number_covers_the_whole_service(
    with_service: Emulator,
) -> None:
    await text_in(with_service, "STOP", To=OUR_NUMBER)

    await assert_refused_21610(with_service, From=OTHER_NUMBER, Body="hi")
    answer = await with_service.client.post(
        MESSAGES, data={"To": PERSON, "MessagingServiceSid": SERVICE, "Body": "hi"}
    )

    assert (answer.status_code, answer.json()["code"]) == (400, 21610)
