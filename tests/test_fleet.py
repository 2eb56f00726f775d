"""A fleet: three `sms-adapter serve` processes on one PostgreSQL database, one of them
SIGKILLed mid-run, Twilio played by the emulator.

Texts are posted, signed, round-robin over the replicas, as a load balancer in front of
them would; a text not acknowledged (the replica is dead, or answered 503) is posted
again to the next one, as Twilio retries; some texts are delivered twice, to different
replicas. At the end every text has exactly one reply at the emulator, each person's
replies come in the order of their texts, and the replies' create times at the emulator
never exceed the account's rate limit, fleet-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from twilio.request_validator import RequestValidator

from adapter.devtools.emulator import EmulatorConfig, EmulatorState, create_emulator_app
from adapter.devtools.emulator.state import OUTBOUND_API
from adapter.ratelimit import Rate
from tests.postgres_db import admin_connection, fresh_schema
from tests.servers import bound_socket, wait_for

ACCOUNT_SID = "AC" + "f1ee7" * 6 + "00"
AUTH_TOKEN = "fleet-test-auth-token"
OUR_NUMBER = "+15005550006"
PEOPLE = [f"+1555010{n:04d}" for n in range(6)]
TEXTS_EACH = 8
RATE = Rate(12, 3.0)
# Create times are stamped when a request reaches the emulator, a little after a
# replica was let start it: the fleet admits them a window apart to the millisecond,
# but a busy machine delays some more than others (by 0.45 s seen here). A limiter per
# replica would put 3 x 12 in a window.
ARRIVAL_SLACK = 0.75
REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Text:
    person: str
    body: str
    sid: str

    def form(self) -> dict[str, str]:
        return {
            "MessageSid": self.sid,
            "SmsSid": self.sid,
            "AccountSid": ACCOUNT_SID,
            "From": self.person,
            "To": OUR_NUMBER,
            "Body": self.body,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def replicas(count: int, database: str, twilio: str, log_dir: Path) -> Iterator[list[Replica]]:
    """`count` replicas of `sms-adapter serve`, always stopped on the way out."""
    started: list[Replica] = []
    try:
        for n in range(count):
            sock, url = bound_socket()
            port = sock.getsockname()[1]
            sock.close()  # the replica binds it itself
            environment = {
                k: v for k, v in os.environ.items() if not k.startswith(("SMS_ADAPTER_", "TWILIO_"))
            } | {
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "SMS_ADAPTER_DATABASE": database,
                "SMS_ADAPTER_TWILIO_BASE_URL": twilio,
                "SMS_ADAPTER_PUBLIC_URL": url,
                "SMS_ADAPTER_BOTS": "bots.echo:router",
                "SMS_ADAPTER_RATE_LIMIT": str(RATE),
                "SMS_ADAPTER_SHUTDOWN_TIMEOUT": "2",
                "SMS_ADAPTER_LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1",
            }
            log = log_dir / f"replica-{n}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "adapter.cli", "serve", "--port", str(port)],
                    env=environment,
                    cwd=REPOSITORY,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            started.append(Replica(url, process, log))
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in started:
            try:
                replica.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(timeout=10)


@contextlib.contextmanager
def emulator() -> Iterator[tuple[str, EmulatorState]]:
    """The emulator on a thread and event loop of its own: it stamps each message's
    create time when the request arrives, not when this test's loop gets round to it."""
    state = EmulatorState()
    app = create_emulator_app(
        EmulatorConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, numbers=[OUR_NUMBER]),
        state,
    )
    sock, url = bound_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield url, state
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def all_ready(fleet: list[Replica], client: httpx.AsyncClient) -> None:
    async def ready(replica: Replica) -> bool:
        assert replica.process.poll() is None, replica.log.read_text(errors="replace")
        with contextlib.suppress(httpx.TransportError):
            return (await client.get(replica.url + "/readyz")).status_code == 200
        return False

    for replica in fleet:
        await wait_for(functools.partial(ready, replica), timeout=30, interval=0.1)


class LoadBalancer:
    """Posts signed webhooks round-robin over the replicas, dead ones included."""

    def __init__(self, fleet: list[Replica], client: httpx.AsyncClient) -> None:
        self._rotation = itertools.cycle(fleet)
        self._client = client

    async def post(self, text: Text) -> int | None:
        """What the next replica answered; None if it could not be reached."""
        url = next(self._rotation).url + "/api/sms"
        form = text.form()
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
        try:
            answer = await self._client.post(
                url, data=form, headers={"X-Twilio-Signature": str(signature)}
            )
        except httpx.TransportError:
            return None
        return answer.status_code

    async def deliver(self, text: Text) -> None:
        """Post until a replica acknowledges the text, as Twilio retries."""
        for _ in range(50):
            if await self.post(text) == 200:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"no replica acknowledged {text}")


async def idle(database: str) -> bool:
    """Nothing left to handle or send."""
    schema = database.rsplit("schema=", 1)[1]
    async with admin_connection() as conn:
        count = await conn.fetchval(
            f"""
            SELECT (SELECT count(*) FROM {schema}.inbound WHERE state = 'pending')
                 + (SELECT count(*) FROM {schema}.outbound WHERE state = 'pending')
            """
        )
    return bool(count == 0)


async def outbox_states(database: str) -> dict[str, int]:
    schema = database.rsplit("schema=", 1)[1]
    async with admin_connection() as conn:
        rows = await conn.fetch(f"SELECT state, count(*) FROM {schema}.outbound GROUP BY state")
    return {row["state"]: row["count"] for row in rows}


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with fresh_schema("fleet") as url:
        yield url


async def test_a_fleet_replies_to_every_text_exactly_once_in_order_within_the_rate(
    database: str, tmp_path: Path
) -> None:
    texts = {
        person: [Text(person, f"{person} #{n}", "SM" + uuid.uuid4().hex) for n in range(TEXTS_EACH)]
        for person in PEOPLE
    }
    acknowledged: list[Text] = []
    with (
        emulator() as (twilio_url, twilio),
        replicas(3, database, twilio_url, tmp_path) as fleet,
    ):
        async with httpx.AsyncClient(timeout=10) as client:
            await all_ready(fleet, client)
            balancer = LoadBalancer(fleet, client)
            victim = fleet[0]

            async def person_texts(person: str) -> None:
                for n, text in enumerate(texts[person]):
                    await balancer.deliver(text)
                    acknowledged.append(text)
                    if len(acknowledged) == len(PEOPLE) * TEXTS_EACH // 3:
                        victim.process.kill()  # SIGKILL: whatever it holds, it holds
                    if n % 3 == 1:
                        # Twilio delivering it again, to another replica: acknowledged
                        # (or the replica is the dead one), and still answered once.
                        assert await balancer.post(text) in (200, None)

            async with asyncio.timeout(60):
                await asyncio.gather(*(person_texts(person) for person in PEOPLE))
        assert victim.process.wait(timeout=10) == -signal.SIGKILL

        # Once nothing is pending nothing more is sent: a duplicate would be there by now.
        await wait_for(functools.partial(idle, database), timeout=60, interval=0.2)
        states = await outbox_states(database)
        replies = [m for m in twilio.messages() if m.direction == OUTBOUND_API]

    assert len(acknowledged) == len(PEOPLE) * TEXTS_EACH
    assert states == {"sent": len(acknowledged)}
    assert Counter(m.body for m in replies) == Counter(
        f"You said: {text.body}" for text in acknowledged
    )
    for person in PEOPLE:
        assert [m.body for m in replies if m.to == person] == [
            f"You said: {text.body}" for text in texts[person]
        ]
    created = sorted(m.date_created.timestamp() for m in replies)
    spans = [last - first for first, last in zip(created, created[RATE.count :], strict=False)]
    assert min(spans) >= RATE.per_seconds - ARRIVAL_SLACK
