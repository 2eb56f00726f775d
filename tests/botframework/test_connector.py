"""The Bot Connector API subset, called as a bot calls it, against the real adapter
(dev mode, its Twilio emulator, uvicorn on loopback). A scripted bot takes the texts, so
each test can make the calls a stock bot would not: forged bodies, stale paths, junk."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.responses import Response

from adapter.cli.dev import DEV_NUMBER, create_dev_app
from adapter.runtime.settings import Settings
from tests.botframework.fake_bot import FakeBot
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"
STRANGER = "+15557654321"


@dataclass
class Adapter:
    base: str
    bot: FakeBot
    http: httpx.AsyncClient

    async def text(self, body: str, person: str = PERSON) -> dict[str, Any]:
        """Text the bot; the activity it was posted."""
        seen = len(self.bot.activities)
        answer = await self.http.post(
            f"{self.base}/_emulator/inbound", data={"From": person, "Body": body}
        )
        assert answer.json()["webhook_status"] == 200
        await wait_for(lambda: len(self.bot.activities) > seen)
        activity: dict[str, Any] = self.bot.activities[-1]
        return activity

    async def sms_to(self, person: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.base}/_emulator/messages", params={"to": person})
        messages: list[dict[str, Any]] = response.json()
        return messages

    async def wait_for_sms(self, person: str, count: int) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            found = await self.sms_to(person)
            return found if len(found) >= count else None

        found: list[dict[str, Any]] = await wait_for(enough)
        return found


@pytest.fixture
async def adapter(tmp_path: Path) -> AsyncIterator[Adapter]:
    bot = FakeBot()

    async def silent(activity: dict[str, Any]) -> Response:
        return Response(status_code=201)

    bot.behaviour = silent
    async with bot.running() as endpoint:
        sock, base = bound_socket()
        settings = Settings(
            database=str(tmp_path / "adapter.sqlite3"), bots=f"botframework+{endpoint}"
        )
        dev = create_dev_app(settings, base)
        async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as http:
            yield Adapter(base, bot, http)


def activities_url(activity: dict[str, Any], conversation: str | None = None) -> str:
    conversation = quote(conversation or activity["conversation"]["id"], safe="")
    return f"{activity['serviceUrl']}/v3/conversations/{conversation}/activities"


async def test_the_bot_gets_microsofts_sms_activity_with_a_secret_service_url(
    adapter: Adapter,
) -> None:
    activity = await adapter.text("hello")

    assert activity["type"] == "message" and activity["channelId"] == "sms"
    assert activity["text"] == "hello"
    assert activity["from"]["id"] == PERSON
    assert activity["conversation"]["id"] == f"{DEV_NUMBER}|{PERSON}"  # our number, and theirs
    assert activity["recipient"]["id"] == DEV_NUMBER
    assert activity["id"].startswith("SM")
    prefix = f"{adapter.base}/botframework/"
    assert activity["serviceUrl"].startswith(prefix)
    assert len(activity["serviceUrl"].removeprefix(prefix)) >= 32
    # Auth mode none: no Authorization header at all (the SDK refuses one without an app id).
    assert "authorization" not in adapter.bot.headers[-1]


async def test_a_reply_goes_to_our_record_of_the_conversation_not_where_the_body_says(
    adapter: Adapter,
) -> None:
    activity = await adapter.text("hello")
    forged = {
        "type": "message",
        "text": "Hi!",
        "from": {"id": "+19998887777"},
        "recipient": {"id": STRANGER},
        "conversation": {"id": STRANGER},
        "serviceUrl": "http://elsewhere.example.com",
    }

    answer = await adapter.http.post(f"{activities_url(activity)}/{activity['id']}", json=forged)

    assert answer.status_code == 200
    assert answer.json()["id"]
    [sms] = await adapter.wait_for_sms(PERSON, 1)
    assert (sms["from"], sms["body"]) == (DEV_NUMBER, "Hi!")
    assert await adapter.sms_to(STRANGER) == []


@pytest.mark.parametrize("encode", [True, False], ids=["%2B-encoded", "literal-plus"])
async def test_send_to_conversation_takes_the_id_encoded_or_not(
    adapter: Adapter, encode: bool
) -> None:
    activity = await adapter.text("hello")
    url = activities_url(activity)
    if not encode:
        url = url.replace("%2B", "+")

    answer = await adapter.http.post(url, json={"type": "message", "text": "Later!"})

    assert answer.status_code == 200, answer.text
    [sms] = await adapter.wait_for_sms(PERSON, 1)
    assert sms["body"] == "Later!"


@pytest.mark.parametrize("kind", ["typing", "event", "trace", "endOfConversation"])
async def test_activities_sms_cannot_show_are_taken_and_dropped(
    adapter: Adapter, kind: str
) -> None:
    activity = await adapter.text("hello")

    dropped = await adapter.http.post(
        f"{activities_url(activity)}/{activity['id']}", json={"type": kind, "text": "x"}
    )
    sent = await adapter.http.post(activities_url(activity), json={"type": "message", "text": "ok"})

    assert dropped.status_code == 200 and dropped.json()["id"]
    assert sent.status_code == 200
    # Only the message went out; had the dropped one been sent, it would be first.
    [sms] = await adapter.wait_for_sms(PERSON, 1)
    assert sms["body"] == "ok"


@dataclass(frozen=True)
class BadCall:
    method: str
    path: str  # after the serviceUrl; {c} is the conversation, {a} the activity id
    body: bytes | None
    status: int
    code: str
    secret: str | None = None  # replaces the serviceUrl's secret


BAD_CALLS = {
    "unknown secret": BadCall(
        "POST",
        "/v3/conversations/{c}/activities",
        b'{"type": "message", "text": "x"}',
        401,
        "Unauthorized",
        secret="not-the-secret",
    ),
    "unknown conversation": BadCall(
        "POST",
        "/v3/conversations/%2B15005550006%7C%2B15550000000/activities",
        b'{"type": "message", "text": "x"}',
        404,
        "ConversationNotFound",
    ),
    "malformed JSON": BadCall(
        "POST",
        "/v3/conversations/{c}/activities/{a}",
        b'{"type": "message", "text":',
        400,
        "BadSyntax",
    ),
    "nested thousands deep": BadCall(
        "POST", "/v3/conversations/{c}/activities", b"[" * 200_000, 400, "BadSyntax"
    ),
    "not an object": BadCall(
        "POST", "/v3/conversations/{c}/activities", b'["message"]', 400, "BadSyntax"
    ),
    "no type": BadCall(
        "POST", "/v3/conversations/{c}/activities", b'{"text": "x"}', 400, "MissingProperty"
    ),
    "wrong field type": BadCall(
        "POST",
        "/v3/conversations/{c}/activities",
        b'{"type": "message", "text": 5}',
        400,
        "BadSyntax",
    ),
    "nothing to send": BadCall(
        "POST", "/v3/conversations/{c}/activities", b'{"type": "message"}', 400, "BadArgument"
    ),
    "update": BadCall(
        "PUT",
        "/v3/conversations/{c}/activities/{a}",
        b'{"type": "message", "text": "x"}',
        405,
        "MethodNotAllowed",
    ),
    "delete": BadCall(
        "DELETE", "/v3/conversations/{c}/activities/{a}", None, 405, "MethodNotAllowed"
    ),
    "members": BadCall("GET", "/v3/conversations/{c}/members", None, 404, "NotFound"),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
async def test_bad_calls_get_an_error_response_and_send_nothing(
    adapter: Adapter, call: BadCall
) -> None:
    activity = await adapter.text("hello")
    service_url = activity["serviceUrl"]
    if call.secret is not None:
        service_url = service_url.rsplit("/", 1)[0] + "/" + call.secret
    path = call.path.format(c=quote(activity["conversation"]["id"], safe=""), a=activity["id"])

    answer = await adapter.http.request(call.method, service_url + path, content=call.body)

    assert answer.status_code == call.status, answer.text
    error = answer.json()["error"]
    assert error["code"] == call.code
    assert error["message"]
    secret = activity["serviceUrl"].rsplit("/", 1)[1]
    assert secret not in answer.text
    # A good call after the bad one is the first (and only) SMS.
    await adapter.http.post(activities_url(activity), json={"type": "message", "text": "good"})
    [sms] = await adapter.wait_for_sms(PERSON, 1)
    assert sms["body"] == "good"


async def test_a_bot_starts_a_conversation_with_a_new_number(adapter: Adapter) -> None:
    activity = await adapter.text("hello")
    conversations = activity["serviceUrl"] + "/v3/conversations"

    started = await adapter.http.post(
        conversations,
        json={
            "bot": {"id": DEV_NUMBER},
            "members": [{"id": STRANGER}],
            "activity": {"type": "message", "text": "Your order shipped"},
        },
    )
    assert started.status_code == 200, started.text
    assert started.json()["id"] == f"{DEV_NUMBER}|{STRANGER}" and started.json()["activityId"]
    follow_up = await adapter.http.post(
        activities_url(activity, started.json()["id"]),
        json={"type": "message", "text": "Tracking: 42"},
    )
    assert follow_up.status_code == 200

    sms = await adapter.wait_for_sms(STRANGER, 2)
    assert [(m["from"], m["body"]) for m in sms] == [
        (DEV_NUMBER, "Your order shipped"),
        (DEV_NUMBER, "Tracking: 42"),
    ]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"members": [{"id": STRANGER}]}, "set bot.id"),
        ({"bot": {"id": DEV_NUMBER}, "members": []}, "exactly one person"),
        ({"bot": {"id": DEV_NUMBER}, "members": [{"id": "alice"}]}, "E.164"),
        ({"bot": {"id": DEV_NUMBER}, "members": [{"id": STRANGER}], "isGroup": True}, "group"),
        # The bot is on the default route (*): that routes texts to it, it does not make
        # every number ours. Only the numbers it has been texted at are its.
        ({"bot": {"id": "+15559990000"}, "members": [{"id": STRANGER}]}, "not one of this bot's"),
        ({"bot": {"id": "MG" + "0" * 32}, "members": [{"id": STRANGER}]}, "not one of this bot's"),
        ({"bot": {"id": "alice"}, "members": [{"id": STRANGER}]}, "not one of this bot's"),
    ],
)
async def test_a_conversation_that_cannot_be_started_is_refused(
    adapter: Adapter, parameters: dict[str, Any], message: str
) -> None:
    activity = await adapter.text("hello")

    answer = await adapter.http.post(activity["serviceUrl"] + "/v3/conversations", json=parameters)

    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]
    await adapter.http.post(activities_url(activity), json={"type": "message", "text": "ok"})
    await adapter.wait_for_sms(PERSON, 1)
    assert await adapter.sms_to(STRANGER) == []  # nothing was texted from anywhere


async def test_long_text_and_media_are_sent_as_sms_can_carry_them(adapter: Adapter) -> None:
    activity = await adapter.text("hello")
    words = " ".join(f"word{i:04}" for i in range(200))  # 1,799 characters
    picture = "https://example.com/cat.jpg"

    answer = await adapter.http.post(
        activities_url(activity),
        json={
            "type": "message",
            "text": words,
            "attachments": [{"contentType": "image/jpeg", "contentUrl": picture}],
        },
    )

    assert answer.status_code == 200
    first, second = await adapter.wait_for_sms(PERSON, 2)
    assert [m["url"] for m in first["media"]] == [picture]
    assert second["media"] == []
    assert len(first["body"]) <= 1600
    assert f"{first['body']} {second['body']}" == words
