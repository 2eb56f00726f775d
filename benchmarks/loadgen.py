"""An open-loop load generator for signed webhooks: a steady schedule, raw HTTP/1.1.

httpx costs about a millisecond of CPU per request, which at 1,000 texts/s would take a
whole core from the two the adapter and the emulated Twilio share. This writes
pre-built request bytes on keep-alive connections instead (a few microseconds each), so
the rate offered is the rate asked for. Latency starts when a request's bytes are written,
not when its 200 comes back.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from benchmarks.support import signed_form


@dataclass
class Webhook:
    """One pre-signed webhook: the reply the echo bot will send, and the request's bytes."""

    reply: str
    data: bytes


def echo_webhooks(port: int, path: str, prefix: str, count: int, first: int = 0) -> list[Webhook]:
    """`count` webhooks from 1,000 people, each text unique (its MessageSid too)."""
    url = f"http://127.0.0.1:{port}{path}"
    webhooks = []
    for i in range(first, first + count):
        text = f"{prefix}{i}"
        body, signature = signed_form(url, i, f"+1555{i % 1000:07d}", text)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        webhooks.append(Webhook(f"You said: {text}", (head + body).encode()))
    return webhooks


@dataclass
class Offered:
    # reply -> when its webhook was due on the schedule (time.time()): the latency clock
    # starts then, not when a free connection let it go, so a server slow to answer 200
    # (all connections busy) shows in the latency instead of holding the clock back.
    sent_at: dict[str, float] = field(default_factory=dict)
    ok: int = 0
    failures: int = 0
    seconds: float = 0.0
    # How far behind its schedule the generator wrote a request, at worst (s): when this is
    # large, the connections were all busy (the server was slow to answer 200).
    worst_lag: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.sent_at) / self.seconds if self.seconds else 0.0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, data: bytes) -> int:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


async def offer(
    port: int, webhooks: list[Webhook], rate: float, max_connections: int = 256
) -> Offered:
    """Send `webhooks` at `rate` a second, on a fixed schedule, whatever the answers."""
    result = Offered()
    idle: list[_Connection] = []
    slots = asyncio.Semaphore(max_connections)

    async def deliver(webhook: Webhook, due: float) -> None:
        async with slots:
            try:
                # A connection idle longer than the server's keep-alive timeout has been
                # closed by it: reusing that would count as the server's failure. (Real
                # clients, aiohttp's pool among them, check the same way.)
                while idle and idle[-1].reader.at_eof():
                    idle.pop().writer.close()
                if idle:
                    connection = idle.pop()
                else:
                    connection = _Connection(*await asyncio.open_connection("127.0.0.1", port))
                result.worst_lag = max(result.worst_lag, time.perf_counter() - due)
                result.sent_at[webhook.reply] = wall_start + (due - start)
                status = await connection.post(webhook.data)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.failures += 1
                return
            idle.append(connection)
            if status == 200:
                result.ok += 1
            else:
                result.failures += 1

    start, wall_start = time.perf_counter(), time.time()
    tasks = []
    for i, webhook in enumerate(webhooks):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(deliver(webhook, due)))
    result.seconds = time.perf_counter() - start
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.writer.close()
    return result
