"""A scripted stand-in for a Bot Framework bot, for the cases a stock bot cannot be made
to show (down, slow, failing after it answered): it records each activity posted to it
with its headers, and answers with whatever the test's `behaviour` does.

    bot = FakeBot()
    bot.behaviour = bot.echo           # replies through the connector, then 200
    async with bot.running() as endpoint: ...
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import bound_socket, serve

Behaviour = Callable[[dict[str, Any]], Awaitable[Response]]


class FakeBot:
    def __init__(self) -> None:
        self.activities: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.behaviour: Behaviour = self.echo

    @contextlib.asynccontextmanager
    async def running(self, port: int | None = None) -> AsyncIterator[str]:
        """Serve the bot on loopback (on `port` if given); yields its messaging endpoint."""
        if port is None:
            sock, base = bound_socket()
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
            base = f"http://127.0.0.1:{port}"
        app = Starlette(routes=[Route("/api/messages", self._messages, methods=["POST"])])
        async with serve(app, sock):
            yield f"{base}/api/messages"

    async def _messages(self, request: Request) -> Response:
        activity = await request.json()
        self.activities.append(activity)
        self.headers.append(dict(request.headers))
        return await self.behaviour(activity)

    async def echo(self, activity: dict[str, Any]) -> Response:
        await reply(activity, {"type": "message", "text": f"Echo: {activity['text']}"})
        return Response(status_code=201)


async def reply(activity: dict[str, Any], answer: dict[str, Any]) -> httpx.Response:
    """ReplyToActivity, as the SDK calls it: ids URL-encoded, to the activity's serviceUrl."""
    conversation = quote(activity["conversation"]["id"], safe="")
    url = f"{activity['serviceUrl']}/v3/conversations/{conversation}/activities/{activity['id']}"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(url, json={**answer, "replyToId": activity["id"]})
    response.raise_for_status()
    return response
