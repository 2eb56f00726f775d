"""Every endpoint that reads a body caps it: declared too large, refused unread (413);
streamed past the cap, cut off there. The dev app over a real socket, and the middleware
alone to count exactly how much of a stream an endpoint was given."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Message, Scope

from adapter.botframework.connector_path import connector_secret
from adapter.cli.dev import DevApp, create_dev_app
from adapter.runtime.settings import Settings
from adapter.web.body_limit import BodyLimitMiddleware, BodyTooLarge
from tests.servers import bound_socket, serve

ADMIN = "operator-secret-token"
# A Bot Framework bot nobody runs: the connector only needs its route to exist.
BOT_ENDPOINT = "http://127.0.0.1:9/api/messages"
CONNECTOR_KEY = "body-limit-connector-key"
SECRET = connector_secret(CONNECTOR_KEY, BOT_ENDPOINT)
FORM = "application/x-www-form-urlencoded"
# Past the checks made on headers alone, so the endpoint goes on to read the body.
SIGNED = {"Content-Type": FORM, "X-Twilio-Signature": "x" * 28}
MIB = 1024 * 1024


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, DevApp]]:
    sock, base = bound_socket()
    settings = Settings(
        database=str(tmp_path / "body.sqlite3"),
        admin_token=ADMIN,
        bots=f"botframework+{BOT_ENDPOINT}",
        botframework_secret=CONNECTOR_KEY,
    )
    dev = create_dev_app(settings, base)
    async with serve(dev.app, sock):
        yield base, dev


# Each endpoint that reads a body, as its callers reach it.
ENDPOINTS = [
    pytest.param("/api/messages", {"Authorization": f"Bearer {ADMIN}"}, id="operator-api"),
    pytest.param("/api/sms", SIGNED, id="webhook"),
    pytest.param("/api/sms/status", SIGNED, id="status-callback"),
    pytest.param(f"/botframework/{SECRET}/v3/conversations", {}, id="connector"),
    pytest.param("/console/api/send", {"Content-Type": "application/json"}, id="dev-console"),
    pytest.param("/_emulator/inbound", {}, id="emulator"),
]


async def _status_while_sending(
    base: str, path: str, headers: dict[str, str], body_chunks: list[bytes], *, chunked: bool
) -> int:
    """Send the request head and then the body chunk by chunk over a raw socket, reading
    the answer at the same time: the status arrives while the body is still unsent."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if chunked:
        head.append("Transfer-Encoding: chunked")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())

    async def send_body() -> None:
        for chunk in body_chunks:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await writer.drain()

    sending = asyncio.create_task(send_body())
    try:
        async with asyncio.timeout(10):
            status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sending
        writer.close()


@pytest.mark.parametrize(("path", "headers"), ENDPOINTS)
async def test_a_body_declared_too_large_is_refused_unread(
    server: tuple[str, DevApp], path: str, headers: dict[str, str]
) -> None:
    base, _ = server
    declared = {**headers, "Content-Length": str(100 * MIB)}
    # Only the first KiB is ever sent: the answer cannot wait for the rest.
    status = await _status_while_sending(base, path, declared, [b"x" * 1024], chunked=False)
    assert status == 413


@pytest.mark.parametrize(("path", "headers"), ENDPOINTS)
async def test_a_chunked_body_past_the_cap_is_refused(
    server: tuple[str, DevApp], path: str, headers: dict[str, str]
) -> None:
    base, _ = server
    # 100 MiB of "[" offered in 16 KiB chunks, with no length declared.
    chunks = [b"[" * (16 * 1024)] * 6400
    status = await _status_while_sending(base, path, headers, chunks, chunked=True)
    assert status == 413


async def test_an_endpoint_is_handed_no_more_than_the_cap_of_a_stream() -> None:
    handed: list[int] = []

    async def greedy(scope: Scope, receive: object, send: object) -> None:
        request = Request(scope, receive)  # type: ignore[arg-type]
        try:
            async for chunk in request.stream():
                handed.append(len(chunk))
            response: Response = PlainTextResponse("read it all")
        except BodyTooLarge as too_large:
            response = PlainTextResponse(too_large.detail, status_code=413)
        await response(scope, receive, send)  # type: ignore[arg-type]

    chunks = [b"x" * 1000] * 1000  # a million bytes, never declared
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/messages", "headers": []}
    await BodyLimitMiddleware(greedy, default=10_000)(scope, receive, send)

    assert sent[0]["status"] == 413
    assert sum(handed) == 10_000 and pulled == 11
