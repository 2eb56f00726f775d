"""Inbound catch-up against the emulator (in process, behind httpx.ASGITransport): which
texts it finds, in what order, what it costs, and what it leaves to another replica."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from adapter.delivery import periodic as periodic_module
from adapter.delivery.catchup import InboundCatchUp
from adapter.delivery.events import ChannelEvents
from adapter.devtools.emulator import EmulatorConfig, EmulatorState, create_emulator_app
from adapter.devtools.emulator.state import INBOUND
from adapter.ratelimit import AccountLimiter, Rate
from adapter.store.memory import MemoryStore
from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.messages import InboundMessage
from tests.servers import wait_for

ACCOUNT_SID = "AC" + "6" * 32
AUTH_TOKEN = "catch-up-unit-token"
OURS = "+15005550006"
OTHER = "+15005550007"  # another application's number on the account
ALICE, BOB = "+15551110001", "+15551110002"
BASE = "http://twilio.test"


@dataclass
class Counting(ChannelEvents):
    results: list[str] = field(default_factory=list)

    def inbound(self, result: str) -> None:
        self.results.append(result)


@dataclass
class Harness:
    state: EmulatorState
    store: MemoryStore
    client: TwilioClient
    requests: list[httpx.Request]
    events: Counting
    woken: list[int]

    def worker(self, holder: str = "one", **options: object) -> InboundCatchUp:
        async def numbers() -> list[str]:
            return [OURS]

        settings: dict[str, object] = {
            "interval": timedelta(seconds=60),
            "max_age": timedelta(hours=1),
        } | options
        return InboundCatchUp(
            self.store,
            self.client,
            AccountLimiter(max_concurrency=5, rate=Rate(100, 1.0), per_sender_mps=None),
            numbers,
            holder=holder,
            wake=lambda: self.woken.append(1),
            events=self.events,
            **settings,  # type: ignore[arg-type]
        )

    def received(self, person: str, body: str, at: datetime, to: str = OURS) -> str:
        message = self.state.add_message(
            direction=INBOUND,
            from_=person,
            to=to,
            body=body,
            status="received",
            date_created=at,
            date_sent=at,
        )
        return message.sid

    async def bodies_pending(self) -> list[tuple[str, str, bool]]:
        """(person, body, late) of the stored texts, in the order the bots get them."""
        seen = []
        while jobs := await self.store.claim_inbound(10, 60):
            for job in jobs:
                message = InboundMessage.from_json(job.payload)
                seen.append((message.from_, message.body, message.late))
                await self.store.finish_inbound(job.id, [])
        return seen

    def list_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/Messages.json")]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    config = EmulatorConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, numbers=[OURS, OTHER])
    state = EmulatorState()
    app = create_emulator_app(config, state)
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request)

    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), event_hooks={"request": [record]}
    )
    store = MemoryStore()
    await store.open()
    client = TwilioClient(Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), BASE, http=http)
    try:
        yield Harness(state, store, client, requests, Counting(), [])
    finally:
        await http.aclose()
        await state.aclose()


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


async def test_texts_missing_from_the_store_are_added_oldest_first(harness: Harness) -> None:
    harness.received(ALICE, "first", ago(seconds=50))
    delivered = harness.received(ALICE, "second", ago(seconds=40))
    harness.received(BOB, "hi", ago(seconds=30))
    harness.received(ALICE, "third", ago(seconds=20))
    harness.received(ALICE, "not ours", ago(seconds=10), to=OTHER)
    # "second" came through the webhook already (its payload does not matter here).
    assert await harness.store.add_inbound(delivered, f"{OURS}|{ALICE}", {}, ago(seconds=40))
    await harness.store.finish_inbound((await harness.store.claim_inbound(1, 60))[0].id, [])

    report = await harness.worker().run_round()

    assert (report.complete, report.found, report.caught_up, report.requests) == (True, 4, 3, 1)
    assert await harness.bodies_pending() == [
        (ALICE, "first", False),
        (BOB, "hi", False),
        (ALICE, "third", False),
    ]
    assert harness.events.results == ["caught_up"] * 3
    assert harness.woken
    [request] = harness.list_requests()
    assert request.url.params["To"] == OURS
    assert request.url.params["PageSize"] == "1000"  # the largest page: fewest requests


async def test_a_second_round_adds_nothing_and_starts_from_the_watermark(
    harness: Harness,
) -> None:
    harness.received(ALICE, "hello", ago(seconds=5))
    worker = harness.worker()
    await worker.run_round()
    watermark = await harness.store.catchup_watermark()
    assert watermark is not None and watermark > ago(seconds=5)

    report = await worker.run_round()

    assert (report.found, report.caught_up) == (1, 0)  # within the margin, already stored
    assert harness.events.results == ["caught_up"]


async def test_a_text_older_than_the_age_limit_is_stored_late_and_counted(
    harness: Harness,
) -> None:
    await harness.store.advance_catchup_watermark(ago(hours=3))
    harness.received(ALICE, "are you there?", ago(hours=2))
    harness.received(ALICE, "hello?", ago(minutes=1))

    report = await harness.worker().run_round()

    assert (report.caught_up, report.too_old) == (1, 1)
    assert await harness.bodies_pending() == [
        (ALICE, "are you there?", True),
        (ALICE, "hello?", False),
    ]
    assert harness.events.results == ["too_old", "caught_up"]


async def test_a_round_is_bounded_and_leaves_the_watermark_when_cut_short(
    harness: Harness,
) -> None:
    start = ago(minutes=30)
    for n in range(2_500):
        harness.received(ALICE, f"text {n}", start + timedelta(milliseconds=500 * n))

    report = await harness.worker(max_requests=2).run_round()

    assert (report.complete, report.requests, report.found) == (False, 2, 2_000)
    assert await harness.store.catchup_watermark() is None
    # The next round (with room) goes on and finds the rest; nothing is added twice.
    report = await harness.worker().run_round()
    assert (report.complete, report.caught_up) == (True, 500)
    assert len(await harness.bodies_pending()) == 2_500


async def test_one_replica_at_a_time_lists(harness: Harness) -> None:
    harness.received(ALICE, "hello", ago(seconds=5))
    first, second = harness.worker("replica-1"), harness.worker("replica-2")

    assert (await first.run_round()).held_lease
    skipped = await second.run_round()
    assert not skipped.held_lease and skipped.requests == 0
    assert len(harness.list_requests()) == 1

    await first.stop()  # hands the lease over at once
    assert (await second.run_round()).held_lease


class UnreachableAtFirst(httpx.AsyncBaseTransport):
    """Twilio as a network that is not up yet: the first `failures` requests are refused."""

    def __init__(self, behind: httpx.AsyncBaseTransport, failures: int) -> None:
        self.behind = behind
        self.failures = failures

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures > 0:
            self.failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.behind.handle_async_request(request)


async def test_a_round_that_found_twilio_unreachable_is_retried_long_before_the_interval(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(periodic_module, "RETRY_FIRST", 0.01)  # the pauses have a test of their own
    harness.received(ALICE, "sent while we were down", ago(minutes=5))
    config = EmulatorConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, numbers=[OURS])
    app = create_emulator_app(config, harness.state)
    flaky = UnreachableAtFirst(httpx.ASGITransport(app=app), failures=2)
    async with httpx.AsyncClient(transport=flaky) as http:
        credentials = Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)
        harness.client = TwilioClient(credentials, BASE, http=http)
        worker = harness.worker(interval=timedelta(hours=1))
        worker.start()
        try:
            # The interval is an hour: only a retry can bring the text in.
            await wait_for(harness.store.pending_inbound_count, timeout=20)
        finally:
            await worker.stop()
    assert flaky.failures == 0
    assert await harness.bodies_pending() == [(ALICE, "sent while we were down", False)]
