"""A replica cut off from PostgreSQL (a black-hole partition through a TCP proxy) while
its sends are in flight to a slow Twilio, for longer than the takeover time: the other
replica takes its work over, and every text reaches Twilio exactly once.

Twilio here creates a message only `TWILIO_DELAY` after a create request arrives, and
does so even if the client has given up by then (a request that reached Twilio is acted
on). Without fencing the cut-off replica's request is still in flight when the other
replica looks for it at Twilio: not found, it is sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.retry import RetryPolicy
from adapter.delivery.sender import Sender
from adapter.devtools.emulator import EmulatorConfig, EmulatorState, create_emulator_app
from adapter.ratelimit import Rate
from adapter.store.base import ReplyDraft
from adapter.store.postgres.store import PostgresStore
from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.messages import OutboundMessage
from tests.postgres_db import fresh_schema
from tests.servers import bound_socket, serve, wait_for
from tests.tcp_proxy import TcpProxy

ACCOUNT = "AC" + "fe" * 16
TOKEN = "fencing-test-token"
OURS = "+15005550006"
PEOPLE = [f"+1555020{n:04d}" for n in range(6)]
# The fleet's clocks: a replica's claims are safe for TTL after its last heartbeat; the
# others take over GRACE (its longest request) later. Twilio takes TWILIO_DELAY to create
# a message: longer than the TTL, shorter than the grace.
TTL = 2.0
GRACE = 4.0
TWILIO_DELAY = 3.0
PARTITION = TTL + GRACE + 2.0


def slow_to_create(app: ASGIApp, created: list[str]) -> ASGIApp:
    """Holds each create request TWILIO_DELAY before Twilio (the emulator) acts on it,
    whether or not the client is still there."""

    async def delayed(scope: Scope, receive: Receive, send: Send) -> None:
        creating = scope["type"] == "http" and scope["method"] == "POST"
        creating = creating and scope["path"].endswith("/Messages.json")
        if not creating:
            await app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        created.append("arrived")
        await asyncio.sleep(TWILIO_DELAY)

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send_if_listening(message: Message) -> None:
            with contextlib.suppress(Exception):
                await send(message)

        await app(scope, replay, send_if_listening)

    return delayed


@contextlib.asynccontextmanager
async def replica(url: str, twilio: str) -> AsyncIterator[tuple[PostgresStore, Sender]]:
    store = PostgresStore(
        url, replica_ttl=TTL, takeover_grace=GRACE, connect_timeout=1, command_timeout=2
    )
    await store.open()
    client = TwilioClient(Credentials(ACCOUNT, ACCOUNT, TOKEN), twilio, timeout=GRACE)
    sender = Sender(
        store,
        client,
        store.limiter(max_concurrency=10, rate=Rate(100, 1.0), per_sender_mps=None),
        RetryPolicy(max_attempts=10, max_age=timedelta(minutes=10)),
        status_callback_url=None,
        concurrency=len(PEOPLE),
        opt_outs=OptOuts(store),
        poll_interval=0.2,
    )
    try:
        yield store, sender
    finally:
        await sender.stop(timeout=1)
        await client.aclose()
        await store.close()


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def test_a_replica_cut_off_mid_send_never_makes_a_text_go_out_twice() -> None:
    state = EmulatorState()
    arrivals: list[str] = []
    emulator = create_emulator_app(
        EmulatorConfig(account_sid=ACCOUNT, auth_token=TOKEN, numbers=[OURS]), state
    )
    sock, twilio = bound_socket()
    async with (
        fresh_schema("fencing") as url,
        serve(slow_to_create(emulator, arrivals), sock),
        TcpProxy(urlsplit(url).hostname or "127.0.0.1", urlsplit(url).port or 5432) as proxy,
        replica(through(proxy, url), twilio) as (_cut_off, cut_off_sender),
        replica(url, twilio) as (healthy, healthy_sender),
    ):
        bodies = [f"your order {n} shipped" for n in range(len(PEOPLE))]
        await healthy.enqueue_outbound(
            [
                ReplyDraft(
                    f"{OURS}|{person}", OutboundMessage(to=person, body=body, from_=OURS).to_json()
                )
                for person, body in zip(PEOPLE, bodies, strict=True)
            ]
        )
        # The cut-off replica alone takes the work, and its requests are on their way...
        cut_off_sender.start()
        await wait_for(lambda: len(arrivals) == len(PEOPLE))
        # ...when it loses the database, for longer than the takeover time.
        proxy.cut()
        healthy_sender.start()
        await asyncio.sleep(PARTITION)
        proxy.restore()

        async def all_sent() -> bool:
            records = await healthy.list_outbound()
            return all(record.state == "sent" for record in records)

        await wait_for(all_sent, timeout=30)
        await asyncio.sleep(TWILIO_DELAY + 0.5)  # any create still held by "Twilio" lands

    sent = Counter(m.body for m in state.messages() if m.direction.startswith("outbound"))
    assert sent == Counter(bodies)  # each text exactly once
