"""Auth mode jwt with two bots, end to end: the adapter (dev mode, its Twilio emulator),
two scripted bots on numbers of their own, and a local identity provider. Each bot gets
tokens for its own scope; a connector call must come from a caller its route allows."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.responses import Response

from adapter.botframework import bridge
from adapter.cli.dev import create_dev_app
from adapter.runtime.settings import Settings
from tests.botframework.fake_bot import FakeBot
from tests.botframework.identity import AUDIENCE, EC_KEY_ID, IdentityProvider, token
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"
STRANGER = "+15557654321"
NUMBER_ONE, NUMBER_TWO = "+15005550006", "+15005550007"
BOT_ONE, BOT_TWO = "bot-one-app-id", "bot-two-app-id"


async def silent(activity: dict[str, Any]) -> Response:
    return Response(status_code=201)


@dataclass
class TwoBots:
    base: str
    one: FakeBot
    two: FakeBot
    http: httpx.AsyncClient

    async def text(self, ours: str, body: str = "hi") -> dict[str, Any]:
        bot = self.one if ours == NUMBER_ONE else self.two
        seen = len(bot.activities)
        answer = await self.http.post(
            f"{self.base}/_emulator/inbound", data={"From": PERSON, "To": ours, "Body": body}
        )
        assert answer.json()["webhook_status"] == 200
        await wait_for(lambda: len(bot.activities) > seen, timeout=20)
        activity: dict[str, Any] = bot.activities[-1]
        return activity

    async def sms_to(self, person: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.base}/_emulator/messages", params={"to": person})
        messages: list[dict[str, Any]] = response.json()
        return messages


@contextlib.asynccontextmanager
async def two_bots(idp: IdentityProvider, tmp_path: Path) -> AsyncIterator[TwoBots]:
    one, two = FakeBot(), FakeBot()
    one.behaviour = two.behaviour = silent
    async with one.running() as first, two.running() as second:
        sock, base = bound_socket()
        settings = Settings(
            database=str(tmp_path / "adapter.sqlite3"),
            routes=(
                {"number": NUMBER_ONE, "botframework_endpoint": first, "bot_app_id": BOT_ONE},
                {"number": NUMBER_TWO, "botframework_endpoint": second, "bot_app_id": BOT_TWO},
            ),
            botframework_auth="jwt",
            botframework_app_id=AUDIENCE,
            botframework_app_password="app-password",
            botframework_token_url=idp.token_url,
            botframework_openid_metadata=idp.metadata_url,
        )
        dev = create_dev_app(settings, base, numbers=[NUMBER_ONE, NUMBER_TWO])
        async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as http:
            yield TwoBots(base, one, two, http)


def bearer(**claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**claims)}"}


async def test_each_bot_receives_a_token_for_its_own_scope(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    async with two_bots(idp, tmp_path) as bots:
        await bots.text(NUMBER_ONE)
        await bots.text(NUMBER_TWO)
        await bots.text(NUMBER_ONE, "again")

    [one_token] = idp.issued(f"{BOT_ONE}/.default")
    [two_token] = idp.issued(f"{BOT_TWO}/.default")
    assert [h["authorization"] for h in bots.one.headers] == [f"Bearer {one_token}"] * 2
    assert [h["authorization"] for h in bots.two.headers] == [f"Bearer {two_token}"]


def _calls(activity: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    conversation = quote(activity["conversation"]["id"], safe="")
    service_url = activity["serviceUrl"]
    message = {"type": "message", "text": "Refused"}
    return {
        "create": (
            f"{service_url}/v3/conversations",
            {"bot": {"id": NUMBER_ONE}, "members": [{"id": STRANGER}], "activity": message},
        ),
        "send": (f"{service_url}/v3/conversations/{conversation}/activities", message),
        "reply": (
            f"{service_url}/v3/conversations/{conversation}/activities/{activity['id']}",
            message,
        ),
    }


@pytest.mark.parametrize("call", ["create", "send", "reply"])
@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"appid": "some-other-app"}, "issued to app 'some-other-app'"),
        ({}, "names no caller"),
        ({"ver": "2.0", "azp": "some-other-app"}, "issued to app 'some-other-app'"),
        ({"appid": BOT_TWO}, f"issued to app '{BOT_TWO}'"),  # bot two's token, bot one's path
        ({"appid": BOT_ONE, "kid": EC_KEY_ID}, "does not list"),  # names the EC key
    ],
    ids=["foreign", "missing", "foreign-v2", "other-bot", "ec-key"],
)
async def test_a_connector_call_from_a_caller_the_bot_does_not_allow_is_refused(
    idp: IdentityProvider, tmp_path: Path, call: str, claims: dict[str, Any], reason: str
) -> None:
    idp.publish_ec_key = True
    async with two_bots(idp, tmp_path) as bots:
        activity = await bots.text(NUMBER_ONE)
        url, body = _calls(activity)[call]

        refused = await bots.http.post(url, json=body, headers=bearer(**claims))
        # The bot's own token, v1.0 or v2.0, is taken; replies go out in order, so had
        # the refused call been sent, it would be the first SMS.
        good = {"type": "message", "text": "Allowed"}
        send_url = _calls(activity)["send"][0]
        v1 = await bots.http.post(send_url, json=good, headers=bearer(appid=BOT_ONE))
        v2 = await bots.http.post(
            send_url, json=good, headers=bearer(ver="2.0", azp=BOT_ONE, appid=None)
        )

        async def two_texts() -> list[dict[str, Any]] | None:
            found = await bots.sms_to(PERSON)
            return found if len(found) >= 2 else None

        texts = await wait_for(two_texts)
        strangers = await bots.sms_to(STRANGER)

    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "Unauthorized"
    assert reason in refused.json()["error"]["message"]
    assert (v1.status_code, v2.status_code) == (200, 200)
    assert [m["body"] for m in texts] == ["Allowed", "Allowed"]
    assert strangers == []


async def test_a_bot_that_refuses_its_token_gets_the_text_again_with_a_new_one(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    async with two_bots(idp, tmp_path) as bots:

        async def refuse_first_token(activity: dict[str, Any]) -> Response:
            if len(bots.one.activities) == 1:
                return Response("token revoked", status_code=401)
            conversation = quote(activity["conversation"]["id"], safe="")
            url = f"{activity['serviceUrl']}/v3/conversations/{conversation}/activities"
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    url,
                    json={"type": "message", "text": f"Echo: {activity['text']}"},
                    headers=bearer(appid=BOT_ONE),
                )
            answer.raise_for_status()
            return Response(status_code=201)

        bots.one.behaviour = refuse_first_token
        await bots.http.post(
            f"{bots.base}/_emulator/inbound",
            data={"From": PERSON, "To": NUMBER_ONE, "Body": "hello"},
        )
        texts = await wait_for(lambda: bots.sms_to(PERSON), timeout=20)

    first, second = idp.issued(f"{BOT_ONE}/.default")
    assert [h["authorization"] for h in bots.one.headers] == [
        f"Bearer {first}",
        f"Bearer {second}",
    ]
    assert bots.one.activities[0]["id"] == bots.one.activities[1]["id"]
    assert [m["body"] for m in texts] == ["Echo: hello"]


async def test_a_token_endpoint_outage_does_not_use_up_the_post_attempts(
    idp: IdentityProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two posts at most: without the fix, three token failures would give the text up.
    monkeypatch.setattr(bridge, "MAX_POST_ATTEMPTS", 2)
    idp.token_failures_left = 3
    async with two_bots(idp, tmp_path) as bots:
        activity = await bots.text(NUMBER_ONE, "are you there")

    assert activity["text"] == "are you there"
    assert len(idp.token_requests) == 4
    assert len(bots.one.activities) == 1  # posted once, when a token could be had
