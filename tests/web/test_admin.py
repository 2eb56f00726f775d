"""Proactive sends, statuses and state, as an operator and a bot author see them: the dev
app over real sockets, with the emulator as Twilio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.cli.dev import DEV_NUMBER, DevApp, create_dev_app
from adapter.runtime.settings import Settings
from tests import status_bot
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"
ADMIN = "operator-secret-token"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, DevApp]]:
    status_bot.statuses.clear()
    sock, base = bound_socket()
    dev = create_dev_app(
        Settings(
            database=str(tmp_path / "api.sqlite3"),
            bots="tests.status_bot:router",
            admin_token=ADMIN,
        ),
        base,
    )
    async with serve(dev.app, sock):
        yield base, dev


def _auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _outbound(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    data = (await client.get(f"{base}/_emulator/messages")).json()
    messages = data["messages"] if isinstance(data, dict) else data
    return [m for m in messages if m["direction"].startswith("outbound")]


async def test_operator_texts_a_person_first_and_sees_it_delivered(
    server: tuple[str, DevApp],
) -> None:
    base, _ = server
    async with httpx.AsyncClient(timeout=10) as client:
        queued = await client.post(
            f"{base}/api/messages",
            json={"to": PERSON, "from": DEV_NUMBER, "body": "Your order shipped"},
            headers=_auth(),
        )
        assert queued.status_code == 202, queued.text
        outbox_id = queued.json()["id"]

        async def delivered() -> dict[str, Any] | None:
            record = (await client.get(f"{base}/api/messages/{outbox_id}", headers=_auth())).json()
            return record if record["status"] == "delivered" else None

        record = await wait_for(delivered)
        assert record["state"] == "sent" and record["message_sid"].startswith("SM")
        [message] = await _outbound(client, base)
        assert (message["to"], message["body"]) == (PERSON, "Your order shipped")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"to": "5551234567", "from": DEV_NUMBER, "body": "x"}, "E.164"),
        ({"to": PERSON, "body": "x"}, "exactly one of"),
        ({"to": PERSON, "from": DEV_NUMBER}, "body or media"),
        ({"to": PERSON, "from": DEV_NUMBER, "body": "x", "media": ["ftp://x"]}, "http(s)"),
        ({"to": PERSON, "from": DEV_NUMBER, "body": "x" * 1601}, "at most 1600"),
        ({"to": PERSON, "route": "*", "body": "x"}, "give from as well"),
        ([1, 2], "JSON object"),
        ({"to": PERSON, "from": DEV_NUMBER, "body": "x", "MediaUrl": ["https://x"]}, "'media'?"),
        ({"to": PERSON, "From": DEV_NUMBER, "body": "x", "zzz": 1}, "unknown key 'From'"),
    ],
)
async def test_bad_operator_requests_get_400_with_the_reason(
    server: tuple[str, DevApp], payload: Any, reason: str
) -> None:
    base, _ = server
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{base}/api/messages", json=payload, headers=_auth())
        assert answer.status_code == 400
        assert reason in answer.json()["error"]
        assert await _outbound(client, base) == []


async def test_operator_api_needs_the_token(server: tuple[str, DevApp]) -> None:
    base, _ = server
    body = {"to": PERSON, "from": DEV_NUMBER, "body": "x"}
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.post(f"{base}/api/messages", json=body)).status_code == 401
        wrong = await client.post(f"{base}/api/messages", json=body, headers=_auth("nope"))
        assert wrong.status_code == 401
        assert ADMIN not in wrong.text
        assert (await client.get(f"{base}/api/messages/dead")).status_code == 401


async def test_operator_api_is_off_without_a_token(tmp_path: Path) -> None:
    sock, base = bound_socket()
    dev = create_dev_app(Settings(database=str(tmp_path / "off.sqlite3")), base)
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{base}/api/messages", json={"to": PERSON}, headers=_auth())
        assert answer.status_code == 404


async def test_bots_keep_state_and_hear_statuses_in_order(server: tuple[str, DevApp]) -> None:
    base, _ = server
    async with httpx.AsyncClient(timeout=10) as client:
        for text in ("a", "b", "c"):
            await client.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": text})

        async def all_delivered() -> list[tuple[str, str]] | None:
            delivered = [s for s in status_bot.statuses if s[1] == "delivered"]
            return status_bot.statuses if len(delivered) == 3 else None

        statuses = await wait_for(all_delivered)
        bodies = [m["body"] for m in await _outbound(client, base)]
    assert bodies == ["#1: a", "#2: b", "#3: c"]  # state carried from turn to turn
    for body in bodies:
        seen = [status for reply, status in statuses if reply == body]
        # Forward only, in Twilio's order, whatever order the callbacks raced in.
        assert seen == sorted(seen, key=["queued", "sent", "delivered"].index)
        assert seen[-1] == "delivered"


async def test_a_late_status_never_moves_a_message_back(server: tuple[str, DevApp]) -> None:
    _, dev = server
    channel = dev.app.state.channel
    outbox_id = await channel.send_text(PERSON, "hello", from_=DEV_NUMBER)

    async def delivered() -> Any:
        record = await channel.store.get_outbound(outbox_id)
        return record if record and record.twilio_status == "delivered" else None

    record = await wait_for(delivered)
    await channel.statuses.record(record.message_sid, "sent", None)
    after = await channel.store.get_outbound(outbox_id)
    assert after is not None and after.twilio_status == "delivered"


# --- send options, scheduled messages ----------------------------------------------------

SERVICE = "MG" + "e" * 32


async def test_operator_sends_with_options_and_twilio_gets_them(
    server: tuple[str, DevApp],
) -> None:
    base, _ = server
    async with httpx.AsyncClient(timeout=10) as client:
        queued = await client.post(
            f"{base}/api/messages",
            json={
                "to": PERSON,
                "from": DEV_NUMBER,
                "body": "Your code is 123456",
                "validity_period": 600,
                "smart_encoded": True,
                "send_as_mms": True,
            },
            headers=_auth(),
        )
        assert queued.status_code == 202, queued.text
        record = (
            await client.get(f"{base}/api/messages/{queued.json()['id']}", headers=_auth())
        ).json()
        assert (record["validity_period"], record["smart_encoded"]) == (600, True)
        [message] = await wait_for(lambda: _outbound(client, base))
    assert 590 <= message["validity_period"] <= 600
    assert (message["smart_encoded"], message["send_as_mms"]) == (True, True)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"validity_period": 0}, "validity_period: 0 s is outside Twilio's range"),
        ({"validity_period": "600"}, "validity_period: must be seconds"),
        ({"max_price": 0.05}, 'max_price: must be a decimal string like "0.05"'),
        ({"send_at": "tomorrow"}, "send_at: 'tomorrow' is not an ISO 8601 time"),
        ({"send_at": "2030-01-01T09:00:00Z"}, "send_at: Twilio schedules messages only through"),
        ({"content_variables": {"1": "x"}}, "content_variables: needs content_sid"),
        # A misspelt option is refused, not dropped: the text would go without it.
        ({"validty_period": 600}, "unknown key 'validty_period' (did you mean 'validity_period'?)"),
    ],
)
async def test_bad_send_options_get_400_naming_the_option(
    server: tuple[str, DevApp], options: dict[str, Any], reason: str | None
) -> None:
    base, _ = server
    payload = {"to": PERSON, "from": DEV_NUMBER, "body": "hi", **options}
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(f"{base}/api/messages", json=payload, headers=_auth())
    if reason is None:
        assert answer.status_code == 202
        return
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["error"]


async def test_a_scheduled_message_is_listed_and_canceled_and_the_bot_hears_of_it(
    server: tuple[str, DevApp],
) -> None:
    base, dev = server
    send_at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    async with httpx.AsyncClient(timeout=10) as client:
        queued = await client.post(
            f"{base}/api/messages",
            json={
                "to": PERSON,
                "messaging_service_sid": SERVICE,
                "body": "Reminder: your appointment is at 10",
                "send_at": send_at.isoformat(),
            },
            headers=_auth(),
        )
        assert queued.status_code == 202, queued.text
        outbox_id = queued.json()["id"]

        async def listed() -> list[dict[str, Any]] | None:
            answer = await client.get(f"{base}/api/messages/scheduled", headers=_auth())
            return answer.json()["messages"] or None

        [scheduled] = await wait_for(listed)
        assert (scheduled["id"], scheduled["status"]) == (outbox_id, "scheduled")
        assert scheduled["send_at"] == send_at.isoformat()
        [at_twilio] = await _outbound(client, base)
        assert at_twilio["status"] == "scheduled"

        canceled = await client.delete(f"{base}/api/messages/{outbox_id}", headers=_auth())
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "canceled"
        again = await client.delete(f"{base}/api/messages/{outbox_id}", headers=_auth())
        assert again.status_code == 409 and "canceled, not scheduled" in again.json()["error"]
        missing = await client.delete(f"{base}/api/messages/999", headers=_auth())
        assert missing.status_code == 404
        unauthorized = await client.delete(f"{base}/api/messages/{outbox_id}")
        assert unauthorized.status_code == 401
        assert (await client.get(f"{base}/api/messages/scheduled", headers=_auth())).json() == {
            "messages": []
        }
        [at_twilio] = await _outbound(client, base)
        assert at_twilio["status"] == "canceled"

        # The time passes at Twilio: a canceled message stays unsent.
        await client.post(f"{base}/_emulator/clock", json={"advance_seconds": 7200})
        await dev.emulator.settle()
        [at_twilio] = await _outbound(client, base)
        assert at_twilio["status"] == "canceled"
    assert ("Reminder: your appointment is at 10", "canceled") in status_bot.statuses


async def test_a_message_sent_at_once_cannot_be_canceled(server: tuple[str, DevApp]) -> None:
    base, _ = server
    async with httpx.AsyncClient(timeout=10) as client:
        queued = await client.post(
            f"{base}/api/messages",
            json={"to": PERSON, "from": DEV_NUMBER, "body": "now"},
            headers=_auth(),
        )
        outbox_id = queued.json()["id"]
        await wait_for(lambda: _outbound(client, base))
        refused = await client.delete(f"{base}/api/messages/{outbox_id}", headers=_auth())
    assert refused.status_code == 409
    assert "only a scheduled message can be canceled" in refused.json()["error"]


async def test_operator_texts_through_the_default_route_from_a_number_given(
    server: tuple[str, DevApp],
) -> None:
    base, _ = server
    async with httpx.AsyncClient(timeout=10) as client:
        queued = await client.post(
            f"{base}/api/messages",
            json={"to": PERSON, "route": "*", "from": DEV_NUMBER, "body": "Your order shipped"},
            headers=_auth(),
        )
        assert queued.status_code == 202, queued.text

        async def sent() -> list[dict[str, Any]] | None:
            return await _outbound(client, base) or None

        [message] = await wait_for(sent)
    assert (message["from"], message["to"], message["body"]) == (
        DEV_NUMBER,
        PERSON,
        "Your order shipped",
    )
