"""A raw HTTP/1.1 server on loopback for the Twilio client's transport tests: it records
each request as it arrived on the socket and lets a handler answer, misbehave or stay silent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass
class Request:
    head: list[bytes]
    body: bytes

    def header(self, name: bytes) -> list[bytes]:
        return [
            line.partition(b":")[2].strip()
            for line in self.head[1:]
            if line.partition(b":")[0].strip().lower() == name
        ]


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class LoopbackServer:
    """Reads HTTP/1.1 requests off keep-alive connections; `handler` answers (or not)."""

    handler: Handler
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.append(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head[:-4].split(b"\r\n")
                request = Request(lines, b"")
                length = int((request.header(b"content-length") or [b"0"])[0])
                request.body = await reader.readexactly(length)
                self.requests.append(request)
                if not await self.handler(request, writer):
                    return
        finally:
            writer.close()


@asynccontextmanager
async def loopback(handler: Handler) -> AsyncIterator[tuple[LoopbackServer, str]]:
    state = LoopbackServer(handler)
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        await server.wait_closed()


def http_answer(status: int, body: bytes, *extra: bytes) -> bytes:
    """An HTTP/1.1 answer with a JSON content type, `extra` header lines and a length."""
    headers = [f"HTTP/1.1 {status} Whatever".encode(), b"Content-Type: application/json"]
    headers += [*extra, f"Content-Length: {len(body)}".encode()]
    return b"\r\n".join(headers) + b"\r\n\r\n" + body


def answering(status: int, body: bytes, *extra: bytes) -> Handler:
    """A handler that answers every request with `http_answer(status, body, *extra)`."""

    async def answer(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(http_answer(status, body, *extra))
        await writer.drain()
        return True

    return answer
