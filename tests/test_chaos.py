"""A hundred texts through a Twilio that misbehaves: every reply still arrives exactly once.

The emulator answers a share of Send Message requests with 429 or 500, and drops the
connection on some after creating the message: the adapter cannot know those were sent
and must find them at Twilio instead of sending them twice. The faults come from a seeded
random source, so the share of each fault is the same on every run; which reply meets
which fault depends on the order requests arrive in.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.devtools.emulator import (
    EmulatorConfig,
    EmulatorState,
    Fault,
    create_emulator_app,
    parse_faults,
)
from adapter.runtime.channel import Channel
from adapter.runtime.settings import Settings
from adapter.web.app import create_app
from tests.servers import bound_socket, serve, wait_for

ACCOUNT_SID = "AC" + "4" * 32
AUTH_TOKEN = "durability-chaos-token-0b7e"
OURS = "+15005550006"
PEOPLE = [f"+1555600{n:04d}" for n in range(10)]
TEXTS_EACH = 10
FAULTS = "429=0.1,500=0.1,drop=0.05,seed=11"


class CreateCounter:
    """Counts Send Message requests as they reach the emulator: each one draws a fault."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.creates = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/Messages.json")
        ):
            self.creates += 1
        await self.app(scope, receive, send)


def faults_drawn(creates: int) -> Counter[Fault | None]:
    """The faults the emulator's seeded source gave its first `creates` requests."""
    faults = parse_faults(FAULTS)
    rng = random.Random(faults.seed)
    return Counter(faults.choose(rng) for _ in range(creates))


@dataclass
class Rig:
    adapter: str
    emulator: str
    counter: CreateCounter
    state: EmulatorState
    channel: Channel


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    emulator_sock, emulator_url = bound_socket()
    adapter_sock, adapter_url = bound_socket()
    state = EmulatorState()
    counter = CreateCounter(
        create_emulator_app(
            EmulatorConfig(
                account_sid=ACCOUNT_SID,
                auth_token=AUTH_TOKEN,
                webhook_url=f"{adapter_url}/api/sms",
                numbers=[OURS],
                faults=parse_faults(FAULTS),
            ),
            state,
        )
    )
    adapter = create_app(
        Settings(
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            public_url=adapter_url,
            twilio_base_url=emulator_url,
            # Every reply carries send options, which retries must keep.
            routes=(
                {
                    "default": True,
                    "bot": "bots.echo:router",
                    "send": {"validity_period": 3600, "smart_encoded": True},
                },
            ),
            database=str(tmp_path / "adapter.sqlite3"),
        )
    )
    # The emulator's lifespan closes its state; it stops after the adapter.
    async with serve(counter, emulator_sock), serve(adapter, adapter_sock):
        yield Rig(adapter_url, emulator_url, counter, state, adapter.state.channel)


async def text(client: httpx.AsyncClient, rig: Rig, person: str, body: str) -> None:
    answer = await client.post(
        f"{rig.emulator}/_emulator/inbound", data={"From": person, "To": OURS, "Body": body}
    )
    assert answer.status_code == 200 and answer.json()["webhook_status"] == 200, answer.text


async def test_every_reply_arrives_exactly_once_through_429s_500s_and_drops(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapter.sender")
    texts = {person: [f"{person} says {n}" for n in range(TEXTS_EACH)] for person in PEOPLE}
    channel = rig.channel

    async def quiet() -> bool:
        stats = await channel.store.outbox_stats()
        return stats.depth == 0 and await channel.store.pending_inbound_count() == 0

    async with asyncio.timeout(50), httpx.AsyncClient(timeout=30) as client:

        async def converse(person: str) -> None:
            for body in texts[person]:
                await text(client, rig, person, body)

        await asyncio.gather(*(converse(person) for person in PEOPLE))
        await wait_for(quiet, timeout=45, interval=0.05)

    replies: dict[str, list[str]] = {}
    for message in rig.state.messages():  # oldest first
        if message.direction.startswith("outbound"):
            replies.setdefault(message.to, []).append(message.body)
            # Retried, reconciled or not, each went with its options (validity: what was left).
            assert message.options["smart_encoded"] is True, message
            assert 1 <= message.options["validity_period"] <= 3600, message
    for person in PEOPLE:
        assert replies.get(person) == [f"You said: {body}" for body in texts[person]], person
    assert await channel.store.list_outbound(state="dead") == []
    assert await channel.store.list_outbound(state="failed") == []

    # Each dropped create made a message the adapter never heard of; each must have been
    # found at Twilio and adopted, not sent again.
    drawn = faults_drawn(rig.counter.creates)
    print(f"{rig.counter.creates} creates for {len(PEOPLE) * TEXTS_EACH} replies: {drawn}")
    assert drawn[Fault.DROP] >= 1 and drawn[Fault.TOO_MANY_REQUESTS] >= 1
    assert drawn[Fault.SERVER_ERROR] >= 1
    adopted = [r for r in caplog.records if "did reach Twilio" in r.getMessage()]
    assert len(adopted) == drawn[Fault.DROP]
