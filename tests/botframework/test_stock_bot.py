"""A stock Bot Framework bot (Microsoft's SDK, unchanged) answering texts over SMS:
emulator → signed webhook → adapter → POST to the bot → the bot's Connector calls →
outbox → Send Message → emulator. Everything on loopback, over real sockets."""

from __future__ import annotations

from typing import Any

import httpx

from adapter.cli.dev import DEV_NUMBER
from tests.botframework.harness import SECOND_NUMBER, Running
from tests.servers import wait_for


async def text_the_bot(
    client: httpx.AsyncClient, running: Running, person: str, body: str, to: str = DEV_NUMBER
) -> None:
    answer = await client.post(
        f"{running.base}/_emulator/inbound", data={"From": person, "To": to, "Body": body}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["webhook_status"] == 200


async def texts_to(
    client: httpx.AsyncClient, running: Running, person: str
) -> list[dict[str, Any]]:
    response = await client.get(f"{running.base}/_emulator/messages", params={"to": person})
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()
    return messages


async def wait_for_bodies(
    client: httpx.AsyncClient, running: Running, person: str, count: int
) -> list[str]:
    async def bodies() -> list[str] | None:
        found = [m["body"] for m in await texts_to(client, running, person)]
        return found if len(found) >= count else None

    result: list[str] = await wait_for(bodies, timeout=20)
    return result


async def test_a_text_reaches_the_bot_and_its_echo_comes_back_as_an_sms(running: Running) -> None:
    person = "+15551230001"
    async with httpx.AsyncClient(timeout=10) as client:
        await text_the_bot(client, running, person, "hello there")
        [reply] = await wait_for_bodies(client, running, person, 1)
        [message] = await texts_to(client, running, person)

    assert reply == "Echo: hello there"
    assert message["from"] == DEV_NUMBER  # from the number the person texted


async def test_a_proactive_message_through_continue_conversation_arrives(running: Running) -> None:
    person = "+15551230002"
    async with httpx.AsyncClient(timeout=10) as client:
        await text_the_bot(client, running, person, "remember me")
        await wait_for_bodies(client, running, person, 1)

        notified = await client.post(
            f"{running.bot.url}/api/notify", params={"conversation": f"{DEV_NUMBER}|{person}"}
        )
        assert notified.status_code == 200, notified.text
        bodies = await wait_for_bodies(client, running, person, 2)

    assert bodies == ["Echo: remember me", "Proactive hello"]


async def test_a_hero_card_arrives_as_numbered_text(running: Running) -> None:
    person = "+15551230003"
    async with httpx.AsyncClient(timeout=10) as client:
        await text_the_bot(client, running, person, "card")
        [body] = await wait_for_bodies(client, running, person, 1)

    assert body == "Pick a size\nWhich one?\n1. Small\n2. Medium\n3. Large"


async def test_typing_is_dropped_and_the_text_after_it_arrives(running: Running) -> None:
    person = "+15551230004"
    async with httpx.AsyncClient(timeout=10) as client:
        await text_the_bot(client, running, person, "typing")
        await wait_for_bodies(client, running, person, 1)
        await running.dev.emulator.settle()
        bodies = [m["body"] for m in await texts_to(client, running, person)]

    assert bodies == ["done typing"]


async def test_one_person_texting_two_of_our_numbers_has_two_conversations_with_the_bot(
    running_on_two_numbers: Running,
) -> None:
    running, person = running_on_two_numbers, "+15551230005"
    async with httpx.AsyncClient(timeout=10) as client:
        await text_the_bot(client, running, person, "to the first", to=DEV_NUMBER)
        await text_the_bot(client, running, person, "to the second", to=SECOND_NUMBER)
        await wait_for_bodies(client, running, person, 2)
        # The bot saved a conversation reference per conversation.id: one for each number.
        for ours in (DEV_NUMBER, SECOND_NUMBER):
            notified = await client.post(
                f"{running.bot.url}/api/notify", params={"conversation": f"{ours}|{person}"}
            )
            assert notified.status_code == 200, notified.text
        await wait_for_bodies(client, running, person, 4)
        sms = await texts_to(client, running, person)

    assert sorted((m["from"], m["body"]) for m in sms) == sorted(
        [
            (DEV_NUMBER, "Echo: to the first"),
            (SECOND_NUMBER, "Echo: to the second"),
            (DEV_NUMBER, "Proactive hello"),
            (SECOND_NUMBER, "Proactive hello"),
        ]
    )
