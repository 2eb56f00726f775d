"""Bots in a running adapter: startup and shutdown hooks around the serving, a blocking
sync handler that leaves the loop free (health checks, SIGTERM), a startup that fails."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.cli.dev import create_dev_app
from adapter.delivery.lifecycle import BotStartupError
from adapter.runtime.settings import Settings
from tests import lifecycle_bot
from tests.processes import Service, _environment, free_port
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"
OURS = "+15005550006"


async def replies(client: httpx.AsyncClient, base: str) -> list[str]:
    data: Any = (await client.get(f"{base}/_emulator/messages")).json()
    messages = data["messages"] if isinstance(data, dict) else data
    return [m["body"] for m in messages if m["direction"].startswith("outbound")]


async def test_hooks_run_once_around_the_serving_even_for_two_routes(tmp_path: Path) -> None:
    lifecycle_bot.events.clear()
    settings = Settings(
        database=str(tmp_path / "a.sqlite3"),
        bots="+15005550007=tests.lifecycle_bot:other,*=tests.lifecycle_bot:router",
    )
    sock, base = bound_socket()
    dev = create_dev_app(settings, base)
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as client:
        await client.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "hi"})
        assert await wait_for(lambda: replies(client, base)) == ["started: 1"]
        assert lifecycle_bot.events == ["startup"]
    assert lifecycle_bot.events == ["startup", "shutdown"]


async def test_a_failing_startup_hook_stops_start_up_naming_the_bot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_BOT_FAIL", "1")
    settings = Settings(database=str(tmp_path / "a.sqlite3"), bots="tests.lifecycle_bot:router")
    channel = create_dev_app(settings, "http://127.0.0.1:1").app.state.channel
    with pytest.raises(BotStartupError) as failure:
        await channel.start()
    assert str(failure.value) == (
        "bot tests.lifecycle_bot:router: its startup hook open_things raised "
        "ConnectionError: the database at db.example:5432 refused the connection"
    )
    assert not channel.accepting


async def test_healthz_answers_at_once_while_a_sync_handler_sleeps(tmp_path: Path) -> None:
    lifecycle_bot.events.clear()
    settings = Settings(database=str(tmp_path / "a.sqlite3"), bots="tests.lifecycle_bot:router")
    sock, base = bound_socket()
    dev = create_dev_app(settings, base)
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as client:
        await client.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "sleep 5"})
        await wait_for(lambda: "sleeping 5" in lifecycle_bot.events)
        slowest = 0.0
        for _ in range(5):
            started = time.perf_counter()
            answer = await client.get(f"{base}/healthz")
            slowest = max(slowest, time.perf_counter() - started)
            assert answer.status_code == 200
        # Another person's text is answered meanwhile, too.
        await client.post(f"{base}/_emulator/inbound", data={"From": "+15557654321", "Body": "hi"})
        assert await wait_for(lambda: replies(client, base), timeout=3) == ["started: 1"]
        assert slowest < 0.1, f"/healthz took {slowest:.3f}s while the handler slept"
        # And the sleeper's own reply comes when it wakes.
        assert "slept 5s" in await wait_for(
            lambda: _with(replies(client, base), "slept 5s"), timeout=10
        )


async def _with(found: Any, body: str) -> list[str] | None:
    bodies: list[str] = await found
    return bodies if body in bodies else None


async def test_sigterm_ends_the_adapter_on_time_while_a_sync_handler_blocks(
    tmp_path: Path,
) -> None:
    port = free_port()
    dev = Service(
        name="dev",
        args=["dev", "--port", str(port)],
        env=_environment(
            {
                "SMS_ADAPTER_BOTS": "tests.lifecycle_bot:router",
                "SMS_ADAPTER_DATABASE": str(tmp_path / "a.sqlite3"),
                "SMS_ADAPTER_SHUTDOWN_TIMEOUT": "1",
                "SMS_ADAPTER_LOG_LEVEL": "warning",
            }
        ),
        url=f"http://127.0.0.1:{port}",
        ready_path="/readyz",
        log_path=tmp_path / "dev.log",
    )
    dev.start()
    try:
        await dev.wait_ready(timeout=30)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"{dev.url}/_emulator/inbound", data={"From": PERSON, "Body": "sleep 30"}
            )
            assert answer.json()["webhook_status"] == 200
        await asyncio.sleep(0.5)  # the handler is asleep in its thread by now
        assert dev.process is not None
        started = time.perf_counter()
        dev.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(dev.process.wait, 15)
        took = time.perf_counter() - started
    finally:
        dev.stop(grace=1)
    # SMS_ADAPTER_SHUTDOWN_TIMEOUT is 1 s; the handler would sleep 30 s.
    assert took < 6, f"SIGTERM took {took:.1f}s:\n{dev.log_tail()}"


def test_the_command_line_reports_a_failing_startup_hook_in_one_line(tmp_path: Path) -> None:
    env = _environment(
        {
            "LIFECYCLE_BOT_FAIL": "1",
            "SMS_ADAPTER_BOTS": "tests.lifecycle_bot:router",
            "SMS_ADAPTER_DATABASE": str(tmp_path / "a.sqlite3"),
        }
    )
    run = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "dev", "--port", str(free_port())],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert (
        "bot tests.lifecycle_bot:router: its startup hook open_things raised ConnectionError: "
        "the database at db.example:5432 refused the connection" in output
    )
    # One traceback, the hook's (the bot author's code), not the server's lifespan too.
    assert output.count("Traceback") == 1, output
    assert "starlette" not in output
