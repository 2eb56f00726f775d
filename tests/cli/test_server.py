"""Slow and idle clients against the real server (uvicorn, h11, the guarded protocol) on
loopback: each is dropped on time, and Twilio's webhooks are answered throughout.

Bounded: short timeouts, at most 2,000 sockets, every wait capped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from twilio.request_validator import RequestValidator

from adapter.cli.server import (
    HARD_LIMIT_FACTOR,
    MIN_VICTIM_AGE,
    AcceptErrorThrottle,
    ConnectionLimits,
    serve,
    server_config,
)
from adapter.runtime.settings import Settings
from adapter.web.app import create_app
from tests import recording_bot
from tests.servers import wait_for

TOKEN = "slow-client-test-token"
ACCOUNT = "AC" + "3" * 32
FAST = ConnectionLimits(
    header_timeout=0.5, body_timeout=0.5, keepalive_timeout=1, max_connections=1000
)


@contextlib.asynccontextmanager
async def adapter(tmp_path: Path, limits: ConnectionLimits) -> AsyncIterator[str]:
    """The adapter under the hardened server; yields its base URL."""
    async with adapter_server(tmp_path, limits) as (base, _):
        yield base


@contextlib.asynccontextmanager
async def adapter_server(
    tmp_path: Path, limits: ConnectionLimits
) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """The adapter under the hardened server: its base URL, and the server."""
    recording_bot.seen.clear()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        public_url=base,
        database=str(tmp_path / "slow.sqlite3"),
        bots="tests.recording_bot:router",
        twilio_base_url="http://127.0.0.1:9",
    )
    config = server_config(
        create_app(settings), limits, lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    handler = loop.get_exception_handler()
    task = asyncio.create_task(serve(server, [sock]))
    try:
        await wait_for(lambda: server.started)
        yield base, server
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await task
        loop.set_exception_handler(handler)


async def signed_webhook(client: httpx.AsyncClient, base: str, sid_digit: str) -> int:
    form = {
        "MessageSid": "SM" + sid_digit * 32,
        "AccountSid": ACCOUNT,
        "From": "+15551234567",
        "To": "+15005550006",
        "Body": "hello",
    }
    signature = RequestValidator(TOKEN).compute_signature(f"{base}/api/sms", form)
    response = await client.post(
        f"{base}/api/sms",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    return response.status_code


async def connect(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_after(reader: asyncio.StreamReader, limit: float = 5.0) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it sent before."""
    started = time.monotonic()
    received = b""
    async with asyncio.timeout(limit):
        while True:
            try:
                chunk = await reader.read(4096)
            except ConnectionError:
                break
            if not chunk:
                break
            received += chunk
    return time.monotonic() - started, received


HEAD = b"POST /api/sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"


async def test_a_silent_connection_gets_408_and_is_closed(tmp_path: Path) -> None:
    async with adapter(tmp_path, FAST) as base:
        reader, writer = await connect(base)
        took, answer = await closed_after(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert took < 3  # the header timeout is 0.5 s; stock uvicorn never closes it


async def test_headers_trickled_byte_by_byte_are_cut_off_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with adapter(tmp_path, FAST) as base:
        reader, writer = await connect(base)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                writer.write(b"POST /api/sms HTTP/1.1\r\n")
                for _ in range(100):  # a byte every 50 ms: 5 s of headers, never done
                    writer.write(b"X")
                    await writer.drain()
                    await asyncio.sleep(0.05)

        sending = asyncio.create_task(trickle())
        took, answer = await closed_after(reader)
        sending.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert took < 3


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(HEAD + b"Content-Length: 100\r\n\r\nBody=hel", id="partial-body"),
        pytest.param(
            HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nBody=\r\n", id="stalled-chunks"
        ),
    ],
)
async def test_a_stalled_body_is_cut_off_at_the_body_timeout_and_nothing_is_kept(
    tmp_path: Path, request_head: bytes
) -> None:
    async with adapter(tmp_path, FAST) as base:
        reader, writer = await connect(base)
        writer.write(
            request_head.replace(b"Content-Type", b"X-Twilio-Signature: x\r\nContent-Type")
        )
        took, _ = await closed_after(reader)
        writer.close()
    assert took < 3
    assert recording_bot.seen == []


async def test_an_idle_kept_alive_connection_is_closed(tmp_path: Path) -> None:
    async with adapter(tmp_path, FAST) as base:
        reader, writer = await connect(base)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        took, _ = await closed_after(reader)
        writer.close()
    assert first.startswith(b"HTTP/1.1 200")
    assert took < 4  # keep-alive is 1 s


async def test_a_request_answered_in_time_is_not_cut_off(tmp_path: Path) -> None:
    async with adapter(tmp_path, FAST) as base, httpx.AsyncClient(timeout=5) as client:
        # Several in a row on one kept-alive connection, each well inside the timeouts.
        statuses = [await signed_webhook(client, base, digit) for digit in "abc"]
        await asyncio.sleep(0.8)  # past the header timeout, inside the keep-alive one
        statuses.append(await signed_webhook(client, base, "d"))
    assert statuses == [200, 200, 200, 200]


async def test_webhooks_are_answered_while_two_thousand_slow_clients_hold_connections(
    tmp_path: Path,
) -> None:
    # The header timeout is long here: only the cap on connections (evicting the
    # longest-waiting) keeps room for Twilio.
    limits = ConnectionLimits(
        header_timeout=60, body_timeout=60, keepalive_timeout=5, max_connections=500
    )
    async with adapter_server(tmp_path, limits) as (base, server):
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        most_open = 0
        for _ in range(2000):
            reader, writer = await connect(base)
            writer.write(b"POST /api/sms HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            slow.append((reader, writer))
            most_open = max(most_open, len(server.server_state.connections))
        # Past the age at which a waiting connection gives way to a new one.
        await asyncio.sleep(MIN_VICTIM_AGE + 0.2)

        async with httpx.AsyncClient(timeout=5) as client:
            statuses = [await signed_webhook(client, base, digit) for digit in "01234"]

        dropped = sum(reader.at_eof() for reader, _ in slow)
        for _, writer in slow:
            writer.close()
    assert statuses == [200] * 5
    # The slow ones made room: past the cap of 500 a newcomer has a second for its
    # headers, and never are more than twice the cap open (give or take those closing).
    assert dropped >= 1000
    assert most_open <= HARD_LIMIT_FACTOR * 500 + 16
    assert sorted(recording_bot.seen) == ["SM" + d * 32 for d in "01234"]


def test_accept_errors_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    throttle = AcceptErrorThrottle(interval=10, clock=lambda: now[0])
    loop = asyncio.new_event_loop()
    context: dict[str, Any] = {
        "message": "socket.accept() out of system resource",
        "exception": OSError(24, "Too many open files"),
    }
    try:
        with caplog.at_level(logging.ERROR, logger="adapter.server"):
            for step in range(3000):  # 3,000 failed accepts over 30 s
                now[0] = step / 100
                throttle(loop, context)
    finally:
        loop.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "adapter.server"]
    assert len(lines) == 3
    assert "Too many open files" in lines[0]
    assert "(999 more such errors in the last 10s)" in lines[1]
