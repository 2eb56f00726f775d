"""Shared pieces: an emulator behind httpx.ASGITransport, and a receiver on real uvicorn
that records what the emulator posts (webhooks, status callbacks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapter.devtools.emulator import EmulatorConfig, EmulatorState, create_emulator_app
from tests.servers import bound_socket, serve

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "emulator-test-token"
OUR_NUMBER = "+15005550006"
PERSON = "+15551234567"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def make_config(**overrides: Any) -> EmulatorConfig:
    values: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "webhook_url": None,
        "numbers": [OUR_NUMBER],
    }
    values.update(overrides)
    return EmulatorConfig(**values)


@dataclass
class Emulator:
    state: EmulatorState
    client: httpx.AsyncClient  # authenticated as the account, talking to the app in-process

    async def send(self, **form: str | list[str]) -> httpx.Response:
        defaults: dict[str, str | list[str]] = {"To": PERSON, "From": OUR_NUMBER, "Body": "hi"}
        return await self.client.post(MESSAGES, data=defaults | form)


@contextlib.asynccontextmanager
async def running_emulator(config: EmulatorConfig) -> AsyncIterator[Emulator]:
    state = EmulatorState()
    app = create_emulator_app(config, state)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://emulator", auth=(ACCOUNT_SID, AUTH_TOKEN)
        ) as client:
            yield Emulator(state=state, client=client)
    finally:
        await state.aclose()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with running_emulator(make_config()) as running:
        yield running


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    form: list[tuple[str, str]]

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.form)


@dataclass
class Receiver:
    """Records every POST; answers `status`."""

    base_url: str
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    arrived: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)

    def url(self, path: str = "/hook") -> str:
        return f"{self.base_url}{path}"

    async def next(self, timeout: float = 10.0) -> Received:
        async with asyncio.timeout(timeout):
            return await self.arrived.get()

    async def record(self, request: Request) -> Response:
        body = (await request.body()).decode()
        received = Received(
            url=str(request.url),
            headers={k.lower(): v for k, v in request.headers.items()},
            form=parse_qsl(body, keep_blank_values=True),
        )
        self.requests.append(received)
        self.arrived.put_nowait(received)
        return Response(status_code=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    sock, base_url = bound_socket()
    recorder = Receiver(base_url=base_url)
    app = Starlette(routes=[Route("/{path:path}", recorder.record, methods=["POST"])])
    async with serve(app, sock):
        yield recorder
