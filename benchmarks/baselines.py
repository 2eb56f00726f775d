"""Baselines the benchmarks measure the adapter against, on the same server stack
(`uvicorn benchmarks.baselines:app` with the loop and parser `serve` runs on:
benchmarks/support.py uvicorn_app):

- POST /bare: a bare Starlette endpoint that reads the webhook and answers empty TwiML,
  storing and sending nothing: the most any Starlette app on this stack can ingest.
- POST /relay: the least an app can do to answer a text: read the webhook, answer 200,
  then post "You said: <Body>" to Twilio's Send Message with one shared httpx client.
  No signature check, no store, no retries: what the adapter costs beyond the bare
  minimum of answering, end to end. POST /status takes its status callbacks and drops them.
  The client posts over the same HTTP stack as the adapter's REST calls (httpx over
  aiohttp's pool, `adapter.twilio.transport.AiohttpTransport`, from this checkout), so
  the comparison isolates the adapter's own costs rather than the HTTP client's.

Reads TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, SMS_ADAPTER_TWILIO_BASE_URL and
SMS_ADAPTER_PUBLIC_URL (this app's own URL, for StatusCallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapter.twilio.transport import AiohttpTransport

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")
MESSAGES_URL = (
    f"{os.environ.get('SMS_ADAPTER_TWILIO_BASE_URL', '')}"
    f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
)
STATUS_URL = f"{os.environ.get('SMS_ADAPTER_PUBLIC_URL', '')}/status"

client: httpx.AsyncClient | None = None
in_flight: set[asyncio.Task[None]] = set()


async def bare(request: Request) -> Response:
    await request.body()
    return Response(EMPTY_TWIML, media_type="text/xml")


async def send_reply(form: dict[str, str]) -> None:
    assert client is not None
    reply = {
        "To": form["From"],
        "From": form["To"],
        "Body": f"You said: {form['Body']}",
        "StatusCallback": STATUS_URL,
    }
    with contextlib.suppress(httpx.HTTPError):
        await client.post(MESSAGES_URL, data=reply)


async def relay(request: Request) -> Response:
    form = dict(parse_qsl((await request.body()).decode()))
    task = asyncio.create_task(send_reply(form))
    in_flight.add(task)
    task.add_done_callback(in_flight.discard)
    return Response(EMPTY_TWIML, media_type="text/xml")


async def status(request: Request) -> Response:
    await request.body()
    return Response()


async def ready(request: Request) -> Response:
    return Response("ok")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global client
    transport = AiohttpTransport()  # as `TwilioClient` builds it
    async with httpx.AsyncClient(auth=(ACCOUNT_SID, AUTH_TOKEN), transport=transport) as client:
        yield


app = Starlette(
    routes=[
        Route("/bare", bare, methods=["POST"]),
        Route("/relay", relay, methods=["POST"]),
        Route("/status", status, methods=["POST"]),
        Route("/readyz", ready),
    ],
    lifespan=lifespan,
)
