"""Graceful shutdown: stop taking texts, give work in flight a bounded time, hand back the
rest, and pick it up on the next start: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from adapter.cli.dev import create_dev_app
from adapter.runtime.settings import Settings
from tests import slow_bot
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"


async def test_a_turn_cut_short_by_shutdown_runs_again_after_restart(tmp_path: Path) -> None:
    slow_bot.hold, slow_bot.started[:] = True, []
    settings = Settings(
        database=str(tmp_path / "shutdown.sqlite3"),
        bots="tests.slow_bot:router",
        shutdown_timeout=0.3,
    )
    sock, base = bound_socket()
    dev = create_dev_app(settings, base)
    channel = dev.app.state.channel
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "are you there?"}
        )
        assert answer.json()["webhook_status"] == 200  # acknowledged: it must not be lost
        await wait_for(lambda: slow_bot.started)
        assert (await client.get(f"{base}/readyz")).status_code == 200
        emulator = dev.emulator
    # The server has stopped: the turn could not finish in 0.3 s and was handed back.
    assert channel.accepting is False
    assert not [m for m in emulator.messages() if m.direction.startswith("outbound")]

    slow_bot.hold = False
    sock, base = bound_socket()
    again = create_dev_app(settings, base)
    async with serve(again.app, sock), httpx.AsyncClient(timeout=10) as client:

        async def replies() -> list[Any] | None:
            data = (await client.get(f"{base}/_emulator/messages")).json()
            messages = data["messages"] if isinstance(data, dict) else data
            out = [m["body"] for m in messages if m["direction"].startswith("outbound")]
            return out or None

        assert await wait_for(replies) == ["finally: are you there?"]
        await asyncio.sleep(0.2)
        assert await replies() == ["finally: are you there?"]
    assert slow_bot.started == ["are you there?", "are you there?"]
