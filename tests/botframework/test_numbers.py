"""One person, two of our numbers, one Bot Framework bot: two conversations, each answered
from the number that was texted, however the bot interleaves its answers. And the ids
given out before conversation ids named our number (the person's number alone) still
reach the person. The real adapter (dev mode, its emulator) and a scripted bot, on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.responses import Response

from adapter.botframework.records import KEY_PREFIX
from adapter.cli.dev import DEV_NUMBER, create_dev_app
from adapter.delivery.retention import RetentionWorker
from adapter.runtime.channel import Channel
from adapter.runtime.settings import Settings
from tests.botframework.fake_bot import FakeBot, reply
from tests.postgres_db import fresh_schema
from tests.servers import bound_socket, serve, wait_for

A = DEV_NUMBER
B = "+15005550007"
SERVICE = "MG" + "5" * 32
SERVICE_NUMBER = "+15005550008"
PERSON = "+15551234567"
STRANGER = "+15557654321"


@dataclass
class Adapter:
    base: str
    channel: Channel
    bot: FakeBot
    http: httpx.AsyncClient

    async def text(self, body: str, to: str, person: str = PERSON) -> dict[str, Any]:
        """The person texts our number `to`; the activity the bot was posted."""
        seen = len(self.bot.activities)
        answer = await self.http.post(
            f"{self.base}/_emulator/inbound", data={"From": person, "To": to, "Body": body}
        )
        assert answer.json()["webhook_status"] == 200
        await wait_for(lambda: len(self.bot.activities) > seen)
        activity: dict[str, Any] = self.bot.activities[-1]
        return activity

    async def send(self, activity: dict[str, Any], conversation: str, text: str) -> httpx.Response:
        """SendToConversation, under the serviceUrl the bot was given."""
        url = f"{activity['serviceUrl']}/v3/conversations/{quote(conversation, safe='')}/activities"
        return await self.http.post(url, json={"type": "message", "text": text})

    async def wait_for_sms(self, person: str, count: int) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            response = await self.http.get(f"{self.base}/_emulator/messages", params={"to": person})
            found: list[dict[str, Any]] = response.json()
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = await wait_for(enough)
        return found

    async def write_record_as_before(self, person: str, ours: str) -> None:
        """Our record of a conversation as the version before wrote it: one per bot and
        person, under the person's number alone."""
        [bot] = self.channel.botframework.bots
        await self.channel.store.save_state(
            f"botframework:{bot.id}|{person}",
            {
                "conversation": f"{ours}|{person}",
                "person": person,
                "reply_from": ours,
                "reply_service": None,
                "activity_id": "SM" + "0" * 32,
                "attempts": 1,
                "answered": True,
                "token_waits": 0,
            },
        )


@contextlib.asynccontextmanager
async def adapter_for(tmp_path: Path, **settings: Any) -> AsyncIterator[Adapter]:
    bot = FakeBot()

    async def silent(activity: dict[str, Any]) -> Response:
        return Response(status_code=201)  # answers later, through the connector

    bot.behaviour = silent
    async with bot.running() as endpoint:
        settings.setdefault("bots", f"botframework+{endpoint}")
        settings.setdefault("database", str(tmp_path / "adapter.sqlite3"))
        settings = {
            key: _with_endpoint(value, endpoint) if key == "routes" else value
            for key, value in settings.items()
        }
        sock, base = bound_socket()
        dev = create_dev_app(
            Settings(**settings),
            base,
            numbers=[A, B, SERVICE_NUMBER],
            messaging_services={SERVICE: [SERVICE_NUMBER]},
        )
        async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as http:
            yield Adapter(base, dev.app.state.channel, bot, http)


def _with_endpoint(routes: tuple[dict[str, Any], ...], endpoint: str) -> tuple[dict[str, Any], ...]:
    """Route tables whose `botframework_endpoint` is "BOT": the scripted bot's endpoint."""
    return tuple(
        {**route, "botframework_endpoint": endpoint}
        if route.get("botframework_endpoint") == "BOT"
        else route
        for route in routes
    )


@pytest.fixture
async def adapter(tmp_path: Path) -> AsyncIterator[Adapter]:
    async with adapter_for(tmp_path) as running:
        yield running


def sent(sms: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(from, body) of each SMS: the two conversations' replies may go out in either order."""
    return {(message["from"], message["body"]) for message in sms}


async def test_each_answer_comes_from_the_number_texted_even_when_the_bot_answers_late(
    adapter: Adapter,
) -> None:
    to_a = await adapter.text("question for A", A)
    to_b = await adapter.text("question for B", B)

    # The bot answers A's text only now, after B's text reached it; then B's.
    await reply(to_a, {"type": "message", "text": "answer from A"})
    await reply(to_b, {"type": "message", "text": "answer from B"})

    sms = await adapter.wait_for_sms(PERSON, 2)
    assert sent(sms) == {(A, "answer from A"), (B, "answer from B")}


async def test_the_conversation_id_names_our_number_and_the_person_and_stays_the_same(
    adapter: Adapter,
) -> None:
    first_a = await adapter.text("one", A)
    first_b = await adapter.text("two", B)
    second_a = await adapter.text("three", A)

    ids = [a["conversation"]["id"] for a in (first_a, first_b, second_a)]
    assert ids == [f"{A}|{PERSON}", f"{B}|{PERSON}", f"{A}|{PERSON}"]
    # Otherwise the activity is the one Microsoft's SMS channel posts.
    assert [a["from"]["id"] for a in (first_a, first_b, second_a)] == [PERSON] * 3
    assert [a["recipient"]["id"] for a in (first_a, first_b, second_a)] == [A, B, A]


async def test_a_proactive_message_to_each_conversation_comes_from_its_number(
    adapter: Adapter,
) -> None:
    to_a = await adapter.text("hello A", A)
    to_b = await adapter.text("hello B", B)

    # As continue_conversation does with a saved reference: the conversation's id, no reply.
    assert (await adapter.send(to_b, to_a["conversation"]["id"], "news via A")).status_code == 200
    assert (await adapter.send(to_a, to_b["conversation"]["id"], "news via B")).status_code == 200

    sms = await adapter.wait_for_sms(PERSON, 2)
    assert sent(sms) == {(A, "news via A"), (B, "news via B")}


async def test_starting_a_conversation_from_one_number_leaves_the_other_alone(
    adapter: Adapter,
) -> None:
    to_a = await adapter.text("hello A", A)
    await adapter.text("hello B", B)  # B is the bot's now: it was texted there

    started = await adapter.http.post(
        f"{to_a['serviceUrl']}/v3/conversations",
        json={
            "bot": {"id": B},
            "members": [{"id": PERSON}],
            "activity": {"type": "message", "text": "started from B"},
        },
    )
    assert started.status_code == 200, started.text
    assert started.json()["id"] == f"{B}|{PERSON}"
    # The conversation through A is still A's.
    await adapter.send(to_a, to_a["conversation"]["id"], "still from A")

    sms = await adapter.wait_for_sms(PERSON, 2)
    assert sent(sms) == {(B, "started from B"), (A, "still from A")}


async def test_a_conversation_started_with_someone_new_gets_an_id_naming_both(
    adapter: Adapter,
) -> None:
    to_a = await adapter.text("hello", A)

    started = await adapter.http.post(
        f"{to_a['serviceUrl']}/v3/conversations",
        json={"bot": {"id": A}, "members": [{"id": STRANGER}]},
    )
    assert started.status_code == 200, started.text
    assert started.json()["id"] == f"{A}|{STRANGER}"
    follow_up = await adapter.send(to_a, started.json()["id"], "Your order shipped")
    assert follow_up.status_code == 200, follow_up.text

    [sms] = await adapter.wait_for_sms(STRANGER, 1)
    assert (sms["from"], sms["body"]) == (A, "Your order shipped")


async def test_a_service_route_and_a_number_route_to_one_bot_keep_their_senders(
    tmp_path: Path,
) -> None:
    routes = (
        {
            "messaging_service_sid": SERVICE,
            "botframework_endpoint": "BOT",
            "send_via_messaging_service": SERVICE,
        },
        {"default": True, "botframework_endpoint": "BOT"},
    )
    async with adapter_for(tmp_path, routes=routes) as adapter:
        to_service = await adapter.text("via the service", SERVICE_NUMBER)
        to_a = await adapter.text("via A", A)
        await reply(to_service, {"type": "message", "text": "answer through the service"})
        await reply(to_a, {"type": "message", "text": "answer from A"})

        sms = await adapter.wait_for_sms(PERSON, 2)

    by_body = {m["body"]: (m["from"], m["messaging_service_sid"]) for m in sms}
    assert by_body == {
        "answer through the service": (SERVICE_NUMBER, SERVICE),
        "answer from A": (A, None),
    }


# --- ids and records from before conversation ids named our number -------------------


async def test_an_id_that_is_only_the_persons_number_reaches_them_by_the_record_from_before(
    adapter: Adapter,
) -> None:
    # Before the upgrade the person last texted B: the bot saved a reference with their
    # number as the conversation id, and our record said B.
    await adapter.write_record_as_before(PERSON, B)
    to_a = await adapter.text("hello A", A)  # after the upgrade, through A

    old = await adapter.send(to_a, PERSON, "from the saved reference")
    new = await adapter.send(to_a, to_a["conversation"]["id"], "in the new conversation")

    assert (old.status_code, new.status_code) == (200, 200)
    sms = await adapter.wait_for_sms(PERSON, 2)
    assert sent(sms) == {(B, "from the saved reference"), (A, "in the new conversation")}


async def test_a_bot_with_one_number_reaches_the_person_by_their_number_alone(
    tmp_path: Path,
) -> None:
    routes = ({"number": A, "botframework_endpoint": "BOT"},)
    async with adapter_for(tmp_path, routes=routes) as adapter:
        to_a = await adapter.text("hello", A)  # no record from before: a new one only

        answer = await adapter.send(to_a, PERSON, "by number")
        assert answer.status_code == 200, answer.text
        [sms] = await adapter.wait_for_sms(PERSON, 1)

    assert (sms["from"], sms["body"]) == (A, "by number")


@pytest.mark.parametrize(
    "conversation",
    [
        PERSON,  # two numbers, no record from before: which one is meant cannot be known
        f"{B}|{PERSON}",  # B never talked to them
        f"{A}|{STRANGER}",
        f"{A}|{PERSON}|{PERSON}",
        "nul\x00in it",
        "x" * 5000,
    ],
    ids=["number-alone", "other-number", "stranger", "three-parts", "nul", "long"],
)
async def test_a_conversation_we_do_not_have_is_refused_with_404_and_says_what_ids_look_like(
    adapter: Adapter, conversation: str
) -> None:
    to_a = await adapter.text("hello", A)

    answer = await adapter.send(to_a, conversation, "x")

    assert answer.status_code == 404, answer.text
    error = answer.json()["error"]
    assert error["code"] == "ConversationNotFound"
    assert "<our number>|<person>" in error["message"]
    await adapter.send(to_a, to_a["conversation"]["id"], "good")
    [sms] = await adapter.wait_for_sms(PERSON, 1)
    assert sms["body"] == "good"


async def test_a_conversation_id_postgresql_cannot_hold_is_refused_with_404_not_500(
    tmp_path: Path,
) -> None:
    async with fresh_schema("botframework") as database:
        async with adapter_for(tmp_path, database=database) as adapter:
            to_a = await adapter.text("hello", A)

            answer = await adapter.send(to_a, f"{A}|nul\x00in it", "x")

    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "ConversationNotFound"


async def test_a_text_the_bot_answered_before_the_upgrade_is_not_posted_again(
    tmp_path: Path,
) -> None:
    async with adapter_for(tmp_path) as adapter:
        bot = adapter.bot
        [remote] = adapter.channel.botframework.bots
        store = adapter.channel.store

        async def answered_then_upgraded(activity: dict[str, Any]) -> Response:
            # As the version before left it: the bot answered this text (by the
            # person's number) and the post failed; then the adapter was upgraded.
            person = activity["from"]["id"]
            await store.save_state(f"botframework:{remote.id}|{activity['conversation']['id']}", {})
            await store.save_state(
                f"botframework:{remote.id}|{person}",
                {
                    "conversation": f"{A}|{person}",
                    "person": person,
                    "reply_from": A,
                    "reply_service": None,
                    "activity_id": activity["id"],
                    "attempts": 1,
                    "answered": True,
                },
            )
            return Response(status_code=503)

        bot.behaviour = answered_then_upgraded
        await adapter.text("hello", A)

        async def handled() -> bool:
            return await store.pending_inbound_count() == 0

        await wait_for(handled, timeout=20)

    assert len(bot.activities) == 1


async def test_retention_lets_both_kinds_of_record_go_and_keeps_the_bots_numbers(
    adapter: Adapter,
) -> None:
    await adapter.write_record_as_before(PERSON, B)
    to_a = await adapter.text("hello A", A)
    await adapter.text("hello B", B)
    # The channel's retention, run a day past SMS_ADAPTER_RETENTION (30 days).
    month_on = datetime.now(UTC) + timedelta(days=31)
    worker = RetentionWorker(
        adapter.channel.store,
        timedelta(days=30),
        expiring_state_prefixes=(KEY_PREFIX,),
        clock=lambda: month_on,
    )
    await worker.delete_expired()

    gone = [await adapter.send(to_a, c, "x") for c in (to_a["conversation"]["id"], PERSON)]
    # The numbers the bot was texted at are kept, as conversation state is: B is still its.
    started = await adapter.http.post(
        f"{to_a['serviceUrl']}/v3/conversations",
        json={
            "bot": {"id": B},
            "members": [{"id": PERSON}],
            "activity": {"type": "message", "text": "after a month"},
        },
    )

    assert [answer.status_code for answer in gone] == [404, 404]
    assert started.status_code == 200, started.text
    [sms] = await adapter.wait_for_sms(PERSON, 1)
    assert (sms["from"], sms["body"]) == (B, "after a month")
