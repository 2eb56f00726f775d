"""aiohttp's pool under httpx (adapter/twilio/transport.py), over real loopback sockets.

What a user would notice if it went wrong: a request Twilio sees differently from the one
httpx's own pool sends, a connection opened per text, or (worst) a failure classified as
"not sent" after the request left, which the sender would answer by sending the text again.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import TypeVar

import httpx
import pytest

from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.errors import TwilioApiError, TwilioTransportError
from adapter.twilio.transport import AiohttpTransport
from tests.servers import wait_for
from tests.twilio.loopback import (
    Handler,
    LoopbackServer,
    Request,
    answering,
    http_answer,
    loopback,
)

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "token-that-must-stay-secret"
CREDENTIALS = Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)
MESSAGE = {
    "sid": "SM" + "1" * 32,
    "account_sid": ACCOUNT_SID,
    "to": "+15558675310",
    "from": "+15017122661",
    "body": "héllo",
    "status": "queued",
    "direction": "outbound-api",
    "date_created": "Sun, 06 Dec 2026 03:00:00 +0000",
}

E = TypeVar("E", bound=Exception)


created = answering(201, json.dumps(MESSAGE).encode())


def twilio_at(base_url: str, *, timeout: float = 2.0) -> TwilioClient:
    return TwilioClient(CREDENTIALS, base_url, timeout=timeout)


async def send(twilio: TwilioClient, body: str = "héllo & bye") -> object:
    return await twilio.send_message(to="+15558675310", from_="+15017122661", body=body)


async def failed_send(handler: Handler, error: type[E]) -> tuple[E, LoopbackServer]:
    """Sends one text to a server answering with `handler`; the `error` it raises."""
    async with asyncio.timeout(10), loopback(handler) as (server, base_url):
        async with twilio_at(base_url) as twilio:
            with pytest.raises(error) as caught:
                await send(twilio)
    return caught.value, server


async def test_twilio_receives_the_same_request_through_either_pool() -> None:
    async with asyncio.timeout(10), loopback(created) as (server, base_url):
        async with twilio_at(base_url) as ours:
            sent = await send(ours)
        async with httpx.AsyncClient() as http:
            await send(TwilioClient(CREDENTIALS, base_url, http=http))

    ours_request, httpx_request = server.requests
    assert ours_request.head[0] == httpx_request.head[0]
    assert ours_request.head[0].startswith(b"POST /2010-04-01/Accounts/AC")
    assert ours_request.body == httpx_request.body
    for name in (b"authorization", b"user-agent", b"accept", b"content-type", b"host"):
        assert ours_request.header(name) == httpx_request.header(name), name
    assert getattr(sent, "sid", None) == MESSAGE["sid"]
    assert getattr(sent, "body", None) == "héllo"


async def test_connections_are_kept_alive_and_shared() -> None:
    async with asyncio.timeout(20), loopback(created) as (server, base_url):
        async with twilio_at(base_url) as twilio:
            for _ in range(20):
                await send(twilio)
            assert server.connections == 1  # texts sent one after another share one connection
            await asyncio.gather(*(send(twilio) for _ in range(50)))
    assert len(server.requests) == 70
    assert server.connections <= 50  # one per request in flight at most, never per text
    assert server.connections < 70


async def test_a_compressed_error_answer_is_read_as_twilios_json() -> None:
    error = {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}

    async def rejected(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            http_answer(400, gzip.compress(json.dumps(error).encode()), b"Content-Encoding: gzip")
        )
        await writer.drain()
        return True

    failure, _ = await failed_send(rejected, TwilioApiError)
    assert (failure.status, failure.code) == (400, 21211)


async def not_http(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"SMTP ready\r\n\r\n")
    await writer.drain()
    return False


async def reset(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.transport.abort()  # RST, not FIN
    return False


async def cut_short(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(http_answer(201, json.dumps(MESSAGE).encode())[:-10])
    await writer.drain()
    return False


@pytest.mark.parametrize("misbehave", [not_http, reset, cut_short], ids=lambda h: h.__name__)
async def test_a_request_that_arrived_without_a_usable_answer_is_ambiguous(
    misbehave: Handler,
) -> None:
    failure, server = await failed_send(misbehave, TwilioTransportError)
    assert failure.ambiguous is True
    assert len(server.requests) == 1  # Twilio had it: sending again could duplicate it


async def test_waiting_for_a_free_connection_too_long_is_not_sent() -> None:
    release = asyncio.Event()

    async def stall(request: Request, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        return await created(request, writer)

    async with asyncio.timeout(10), loopback(stall) as (server, base_url):
        http = httpx.AsyncClient(transport=AiohttpTransport(max_connections=1))
        async with http:
            patient = TwilioClient(CREDENTIALS, base_url, http=http, timeout=5)
            hasty = TwilioClient(CREDENTIALS, base_url, http=http, timeout=0.3)
            first = asyncio.create_task(send(patient, "first"))
            # Once the server has it, the only connection is busy with it.
            await wait_for(lambda: server.requests)
            with pytest.raises(TwilioTransportError) as caught:
                await send(hasty, "second")
            release.set()
            await first
    assert caught.value.ambiguous is False
    assert [request.body.rpartition(b"Body=")[2] for request in server.requests] == [b"first"]


async def test_a_closed_pool_refuses_requests_and_leaves_no_connection_open() -> None:
    transport = AiohttpTransport()
    async with asyncio.timeout(10), loopback(created) as (server, base_url):
        http = httpx.AsyncClient(transport=transport)
        await send(TwilioClient(CREDENTIALS, base_url, http=http))
        await http.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await send(TwilioClient(CREDENTIALS, base_url, http=http))
        # The server sees its keep-alive connection end when the pool closes (its task
        # returns); a connection left open would hold this wait until the timeout.
        await asyncio.gather(*server.tasks)
    assert (len(server.requests), server.connections) == (1, 1)


async def test_the_environments_proxy_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with asyncio.timeout(10), loopback(created) as (proxy, proxy_url):
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "direct.invalid")
        monkeypatch.delenv("http_proxy", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with httpx.AsyncClient(transport=AiohttpTransport()) as http:
            await send(TwilioClient(CREDENTIALS, "http://api.twilio.invalid", http=http))
            with pytest.raises(TwilioTransportError) as caught:
                await send(TwilioClient(CREDENTIALS, "http://direct.invalid", http=http))
    (through_proxy,) = proxy.requests
    assert through_proxy.head[0].startswith(b"POST http://api.twilio.invalid/2010-04-01/")
    assert caught.value.ambiguous is False  # direct.invalid does not resolve: never sent
