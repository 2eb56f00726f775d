"""Fetch Account and the IncomingPhoneNumbers list, read with the official twilio library
(the reference for Twilio's shapes), and the PhoneNumber filter's partial matches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from adapter.devtools.emulator import create_emulator_app
from tests.devtools.emulator.conftest import ACCOUNT_SID, AUTH_TOKEN, make_config
from tests.servers import bound_socket, serve

NUMBERS = ["+15005550006", "+15005550007", "+447700900123"]
WEBHOOK = "https://bot.example.com/api/sms"


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    sock, base = bound_socket()
    app = create_emulator_app(make_config(numbers=NUMBERS, webhook_url=WEBHOOK))
    async with serve(app, sock):
        yield base


@pytest.fixture
def twilio(base_url: str) -> Iterator[Callable[..., Any]]:
    """The official client against the emulator; its HTTP sessions closed afterwards."""
    made: list[Any] = []

    def client(password: str = AUTH_TOKEN) -> Any:
        made.append(Client(ACCOUNT_SID, password))
        made[-1].api.base_url = base_url
        return made[-1]

    yield client
    for each in made:
        each.http_client.session.close()


async def test_the_twilio_library_fetches_the_account(twilio: Callable[..., Any]) -> None:
    client = twilio()
    account = await asyncio.to_thread(lambda: client.api.v2010.accounts(ACCOUNT_SID).fetch())
    assert (account.sid, account.status, account.type) == (ACCOUNT_SID, "active", "Full")


async def test_the_twilio_library_lists_a_number_with_its_capabilities(
    twilio: Callable[..., Any],
) -> None:
    client = twilio()
    [number] = await asyncio.to_thread(
        lambda: client.incoming_phone_numbers.list(phone_number="+15005550007")
    )
    assert number.phone_number == "+15005550007"
    assert number.sid.startswith("PN") and len(number.sid) == 34
    assert number.capabilities["sms"] is True
    assert number.sms_url == WEBHOOK
    assert number.friendly_name == "(500) 555-0007"


async def test_wrong_credentials_are_refused_as_by_twilio(twilio: Callable[..., Any]) -> None:
    client = twilio(password="wrong")
    with pytest.raises(TwilioRestException) as refused:
        await asyncio.to_thread(lambda: client.api.v2010.accounts(ACCOUNT_SID).fetch())
    assert (refused.value.status, refused.value.code) == (401, 20003)


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ({}, NUMBERS),
        ({"PhoneNumber": "+15005550006"}, ["+15005550006"]),
        ({"PhoneNumber": "5005550"}, ["+15005550006", "+15005550007"]),
        ({"PhoneNumber": "+44*700"}, ["+447700900123"]),
        ({"PhoneNumber": "+15559999999"}, []),
        ({"FriendlyName": "(500) 555-0006"}, ["+15005550006"]),
        ({"PageSize": "2"}, NUMBERS[:2]),
        ({"PageSize": "2", "Page": "1"}, NUMBERS[2:]),
    ],
)
async def test_filters_and_pages(base_url: str, query: dict[str, str], found: list[str]) -> None:
    url = f"{base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
    async with httpx.AsyncClient(auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10) as client:
        page = (await client.get(url, params=query)).json()
    assert [n["phone_number"] for n in page["incoming_phone_numbers"]] == found
    assert (page["next_page_uri"] is not None) == (query == {"PageSize": "2"})
