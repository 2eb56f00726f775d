"""Five texts within one second in `sms-adapter dev`: every view of the conversation
alternates text, reply, text, reply, although Twilio's dates give them all one or two
whole seconds and their SIDs are random."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from adapter.cli.dev import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, DEV_NUMBER, create_dev_app
from adapter.runtime.settings import Settings
from tests import history_order_bot
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551230001"
ADMIN_TOKEN = "history-order-admin-token"
TEXTS = ["one", "two", "three", "four", "five"]
ALTERNATING = [body for text in TEXTS for body in (text, f"You said: {text}")]


async def test_texts_and_replies_alternate_in_every_view(tmp_path: Path) -> None:
    database = tmp_path / "dev.sqlite3"
    history_order_bot.seen.clear()
    sock, base = bound_socket()
    settings = Settings(
        database=str(database), bots="tests.history_order_bot:router", admin_token=ADMIN_TOKEN
    )
    dev = create_dev_app(settings, base)
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as client:
        for text in TEXTS:  # 0.15 s apart: all five within one second
            sent = await client.post(
                f"{base}/_emulator/inbound", data={"From": PERSON, "Body": text}
            )
            assert sent.json()["webhook_status"] == 200
            await asyncio.sleep(0.15)

        async def all_delivered() -> bool | None:
            listed = (await client.get(f"{base}/_emulator/messages")).json()
            messages = listed["messages"] if isinstance(listed, dict) else listed
            done = [m for m in messages if m["direction"].startswith("outbound")]
            return (len(done) == 5 and all(m["status"] == "delivered" for m in done)) or None

        await wait_for(all_delivered)

        operator = await client.get(
            f"{base}/api/conversations/{PERSON}/messages",
            params={"with": DEV_NUMBER, "limit": 20},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert operator.status_code == 200, operator.text
        console = await client.get(
            f"{base}/console/api/history", params={"ours": DEV_NUMBER, "person": PERSON}
        )
        assert console.status_code == 200, console.text
        cli = await asyncio.to_thread(_cli_history, database, base)

    assert _bodies(operator.json()["messages"]) == ALTERNATING
    assert _bodies(console.json()["messages"]) == ALTERNATING
    assert _bodies(cli["messages"]) == ALTERNATING
    # What the bot saw while handling "five": the four exchanges before it, then "five".
    assert history_order_bot.seen[-1] == ALTERNATING[:-1]


def _bodies(messages: list[dict[str, Any]]) -> list[str]:
    return [message["body"] for message in messages]


def _cli_history(database: Path, base: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env |= {
        "TWILIO_ACCOUNT_SID": DEV_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEV_AUTH_TOKEN,
        "SMS_ADAPTER_TWILIO_BASE_URL": base,
        "SMS_ADAPTER_DATABASE": str(database),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapter.cli",
            "history",
            PERSON,
            "--with",
            DEV_NUMBER,
            "--limit",
            "20",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data
