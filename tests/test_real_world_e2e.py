"""SMS in the real world, end to end through `sms-adapter dev` over real sockets: opt-out
(STOP, a refused reply, START), an MMS in and out, a reply too long for one message,
a WhatsApp exchange, and a Messaging Service route.

The bot is tests/real_world_bot.py; the emulator plays Twilio and the person.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.bot.context import RecipientOptedOut
from adapter.cli.dev import DEV_NUMBER, DevApp, create_dev_app
from adapter.runtime.settings import Settings
from adapter.segments import count_segments
from tests import real_world_bot
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"
BOT = "tests.real_world_bot:router"
SERVICE = "MG" + "9" * 32
SERVICE_NUMBER = "+15005550009"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + bytes(30)
GIF_DATA_URL = "data:image/gif;base64," + base64.b64encode(GIF).decode()

Messages = list[dict[str, Any]]


class Phone:
    """The person's side, through the emulator's dev tools."""

    def __init__(self, client: httpx.AsyncClient, base: str, dev: DevApp) -> None:
        self.client = client
        self.base = base
        self.dev = dev

    async def text(self, body: str = "", **fields: Any) -> str:
        form = {"From": PERSON, "Body": body, **fields}
        answer = await self.client.post(f"{self.base}/_emulator/inbound", data=form)
        assert answer.status_code == 200, answer.text
        assert answer.json()["webhook_status"] == 200, answer.json()
        sid: str = answer.json()["sid"]
        return sid

    async def messages(self) -> Messages:
        answer = await self.client.get(f"{self.base}/_emulator/messages")
        answer.raise_for_status()
        return list(answer.json())

    async def replies(self, count: int) -> Messages:
        """The first `count` messages the adapter sent to the person, once all are delivered
        (not Twilio's own answers to STOP, START and HELP)."""

        async def delivered() -> Messages | None:
            outbound = [m for m in await self.messages() if m["direction"] == "outbound-api"]
            done = len(outbound) >= count and all(m["status"] == "delivered" for m in outbound)
            return outbound if done else None

        found: Messages = await wait_for(delivered)
        return found[:count]


@contextlib.asynccontextmanager
async def running_phone(
    tmp_path: Path,
    settings: Settings | None = None,
    numbers: list[str] | None = None,
    messaging_services: dict[str, list[str]] | None = None,
) -> AsyncIterator[Phone]:
    """`sms-adapter dev` on a free loopback port, and the person's phone on it."""
    real_world_bot.refused.clear()
    sock, base = bound_socket()
    chosen = replace(settings or Settings(bots=BOT), database=str(tmp_path / "adapter.sqlite3"))
    dev = create_dev_app(chosen, base, numbers, messaging_services=messaging_services)
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as client:
        yield Phone(client, base, dev)


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Phone]:
    async with running_phone(tmp_path) as running:
        yield running


async def test_stop_refuses_replies_locally_until_start(phone: Phone) -> None:
    await phone.text("STOP")
    await phone.text("anyone there?")
    await wait_for(lambda: real_world_bot.refused == ["anyone there?"])

    channel = phone.dev.app.state.channel
    with pytest.raises(RecipientOptedOut):
        await channel.send_text(PERSON, "we miss you", from_=DEV_NUMBER)

    await phone.text("START")
    await phone.text("back again")
    [reply] = await phone.replies(1)

    assert (reply["body"], reply["to"], reply["from"]) == ("heard: back again", PERSON, DEV_NUMBER)
    # Nothing else ever left: not the refused reply, not the proactive text, no answer to
    # STOP or START: Twilio confirms those itself.
    await phone.dev.emulator.settle()
    sent = await phone.messages()
    assert [m["body"] for m in sent if m["direction"] == "outbound-api"] == ["heard: back again"]
    confirmations = [m["body"] for m in sent if m["direction"] == "outbound-reply"]
    assert [body.split(".")[0] for body in confirmations] == [
        "You have successfully been unsubscribed",
        "You have successfully been re-subscribed to messages from this number",
    ]


async def test_an_mms_in_is_downloaded_by_the_bot_and_an_mms_goes_out(phone: Phone) -> None:
    await phone.text("look", MediaUrl=GIF_DATA_URL)

    [reply] = await phone.replies(1)

    assert reply["body"] == f"got {len(GIF)} bytes of image/gif"
    assert reply["num_media"] == "1" and reply["sid"].startswith("MM")
    assert reply["media"] == [{"url": real_world_bot.REPLY_PICTURE, "content_type": "image/png"}]


async def test_a_3500_character_reply_arrives_as_three_parts_in_order(phone: Phone) -> None:
    await phone.text("long")

    parts = await phone.replies(3)

    bodies = [part["body"] for part in parts]
    assert " ".join(bodies) == real_world_bot.LONG_REPLY
    assert all(len(body) <= 1600 for body in bodies)
    assert [part["num_segments"] for part in parts] == [str(count_segments(b)) for b in bodies]
    await phone.dev.emulator.settle()
    assert len([m for m in await phone.messages() if m["direction"] != "inbound"]) == 3


async def test_a_whatsapp_exchange_stays_on_whatsapp(phone: Phone) -> None:
    await phone.text("who", From=f"whatsapp:{PERSON}", ProfileName="Ana")

    [reply] = await phone.replies(1)

    assert (reply["from"], reply["to"]) == (f"whatsapp:{DEV_NUMBER}", f"whatsapp:{PERSON}")
    assert reply["body"] == "hello Ana"


async def test_a_messaging_service_route_answers_through_the_service(tmp_path: Path) -> None:
    routes = (
        {"messaging_service_sid": SERVICE, "bot": BOT, "send_via_messaging_service": SERVICE},
        {"default": True, "bot": "bots.echo:router"},
    )
    async with running_phone(
        tmp_path,
        settings=Settings(routes=routes),
        numbers=[DEV_NUMBER, SERVICE_NUMBER],
        messaging_services={SERVICE: [SERVICE_NUMBER]},
    ) as phone:
        await phone.text("to the service", To=SERVICE_NUMBER)
        [through_service] = await phone.replies(1)
        await phone.text("to the plain number", To=DEV_NUMBER)
        replies = await phone.replies(2)

    assert through_service["body"] == "heard: to the service"
    assert through_service["messaging_service_sid"] == SERVICE
    assert through_service["from"] == SERVICE_NUMBER  # the service picked its number
    assert (replies[1]["body"], replies[1]["from"], replies[1]["messaging_service_sid"]) == (
        "You said: to the plain number",
        DEV_NUMBER,
        None,
    )
