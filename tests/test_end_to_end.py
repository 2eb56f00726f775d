"""A text travels the whole way over real sockets: emulator → signed webhook → store →
bot → outbox → Send Message → emulator, with status callbacks coming back.

This is `sms-adapter dev`: the same app, served by uvicorn on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.cli.dev import DEV_NUMBER, create_dev_app
from adapter.runtime.settings import Settings
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"


@pytest.fixture
async def dev_server(tmp_path: Path) -> AsyncIterator[tuple[str, Any]]:
    sock, base = bound_socket()
    dev = create_dev_app(
        Settings(database=str(tmp_path / "adapter.sqlite3"), bots="bots.echo:router"), base
    )
    async with serve(dev.app, sock):
        yield base, dev


async def _messages(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    response = await client.get(f"{base}/_emulator/messages")
    response.raise_for_status()
    data = response.json()
    return list(data["messages"] if isinstance(data, dict) else data)


async def test_a_text_reaches_the_bot_and_the_reply_reaches_the_phone(
    dev_server: tuple[str, Any],
) -> None:
    base, _ = dev_server
    async with httpx.AsyncClient(timeout=10) as client:
        sent = await client.post(
            f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "hello"}
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["webhook_status"] == 200

        async def delivered_reply() -> dict[str, Any] | None:
            for message in await _messages(client, base):
                if message["direction"].startswith("outbound") and message["status"] == "delivered":
                    return message
            return None

        reply = await wait_for(delivered_reply)
    assert reply["to"] == PERSON
    assert reply["from"] == DEV_NUMBER
    assert reply["body"] == "You said: hello"


async def test_each_text_gets_exactly_one_reply_in_order(dev_server: tuple[str, Any]) -> None:
    base, _ = dev_server
    texts = [f"text {i}" for i in range(20)]
    async with httpx.AsyncClient(timeout=10) as client:
        for text in texts:
            answer = await client.post(
                f"{base}/_emulator/inbound", data={"From": PERSON, "Body": text}
            )
            assert answer.json()["webhook_status"] == 200

        async def replies() -> list[str] | None:
            bodies = [
                m["body"]
                for m in await _messages(client, base)
                if m["direction"].startswith("outbound")
            ]
            return bodies if len(bodies) >= len(texts) else None

        bodies = await wait_for(replies)
    assert bodies == [f"You said: {text}" for text in texts]


async def test_a_duplicate_webhook_runs_the_bot_once(dev_server: tuple[str, Any]) -> None:
    base, dev = dev_server
    async with httpx.AsyncClient(timeout=10) as client:
        first = (
            await client.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "once"})
        ).json()
        again = await client.post(
            f"{base}/_emulator/inbound",
            data={"From": PERSON, "Body": "once", "MessageSid": first["sid"]},
        )
        assert again.json()["webhook_status"] == 200  # acknowledged, so Twilio stops retrying

        async def one_reply() -> list[dict[str, Any]] | None:
            outbound = [
                m for m in await _messages(client, base) if m["direction"].startswith("outbound")
            ]
            return outbound or None

        await wait_for(one_reply)
        await dev.emulator.settle()
        outbound = await one_reply()
    assert outbound is not None and [m["body"] for m in outbound] == ["You said: once"]


async def test_unsigned_webhook_is_refused_and_reaches_no_bot(dev_server: tuple[str, Any]) -> None:
    base, _ = dev_server
    form = {
        "MessageSid": "SM" + "f" * 32,
        "AccountSid": "AC" + "0" * 30 + "de",
        "From": PERSON,
        "To": DEV_NUMBER,
        "Body": "forged",
    }
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{base}/api/sms", data=form, headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
        )
        assert answer.status_code == 403
        assert "signature" in answer.text
        unsigned = await client.post(f"{base}/api/sms", data=form)
        assert unsigned.status_code == 403
        assert await _messages(client, base) == []


async def test_health_and_readiness(dev_server: tuple[str, Any]) -> None:
    base, _ = dev_server
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{base}/healthz")).status_code == 200
        ready = await client.get(f"{base}/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
