"""The whole adapter keeps to SMS_ADAPTER_RATE_LIMIT, and uses what it allows.

A hundred replies wait in the outbox before the adapter starts, each to a different
person so that no conversation's ordering holds one back: the backlog is non-empty from
the first send to the last. The adapter, configured with `SMS_ADAPTER_RATE_LIMIT=20/1s`,
sends them to the emulator, which stands in for Twilio and notes when each Send Message
request *arrives* (Twilio counts arrivals). On the way, the first 20 requests wait half
a second, as requests that open new connections do, while the later ones go at once, as
on warm connections: counted by start times, the next 20 would arrive within the same
second as the first ones. The assertions count arrivals: none of the 1 s windows holds
more than 20, and the whole-second windows of the busy period hold at least 90% of
what the limit allows.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.devtools.emulator import EmulatorConfig, EmulatorState, create_emulator_app
from adapter.runtime.channel import build_channel
from adapter.runtime.settings import load_settings
from adapter.store.base import ReplyDraft
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.messages import ConversationKey, OutboundMessage
from adapter.web.app import create_app
from tests.servers import bound_socket, serve, wait_for

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "durability-rate-token-e41d"
OURS = "+15005550006"
LIMIT, WINDOW = 20, 1.0  # SMS_ADAPTER_RATE_LIMIT=20/1s
REPLIES = 100
# The recorder stamps a request after the limiter admitted it, by the same clock, once
# the request has been built: a few hundred microseconds later, more when the machine is
# busy (a garbage collection, another process on the CPU). So two stamps LIMIT apart can
# come out a little under WINDOW although their admissions were exactly WINDOW apart
# (measured: up to 1.5 ms on an idle machine, 25 ms with both CPUs oversubscribed).
# Windows are shortened by this allowance to absorb that noise; what a broken limiter
# does (one request too many, a fixed window, no limit) puts LIMIT + 1 requests within
# milliseconds of each other, far inside the allowance.
STAMP_SLACK = 0.1
# How long the first LIMIT requests take to reach the stand-in (new connections).
COLD_START = 0.5


class ColdStartTransport(httpx.AsyncBaseTransport):
    """Holds the first LIMIT Send Message requests back for COLD_START on their way."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._sent = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/Messages.json"):
            self._sent += 1
            if self._sent <= LIMIT:
                await asyncio.sleep(COLD_START)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


class ArrivalRecorder:
    """The Twilio stand-in's front door: notes when each Send Message request arrives."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.creates: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/Messages.json")
        ):
            self.creates.append(time.monotonic())
        await self._app(scope, receive, send)


async def fill_outbox(database: Path) -> None:
    store = SQLiteStore(database)
    await store.open()
    try:
        people = [f"+1555500{n:04d}" for n in range(REPLIES)]
        await store.enqueue_outbound(
            [
                ReplyDraft(
                    str(ConversationKey(ours=OURS, person=person)),
                    OutboundMessage(to=person, body="a reply", from_=OURS).to_json(),
                )
                for person in people
            ]
        )
    finally:
        await store.close()


def most_in_any_window(times: list[float], window: float) -> int:
    """The most events in any half-open interval [t, t + window); the busiest such
    interval starts at an event, so only those need checking."""
    return max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))


def whole_windows_from(times: list[float], window: float) -> list[int]:
    """Events in each whole window [t0 + k*window, t0 + (k+1)*window) that ends by the
    last event: the windows throughout which work was waiting to be sent."""
    start, end = times[0], times[-1]
    count = int((end - start) // window)
    edges = [start + k * window for k in range(count + 1)]
    return [
        bisect.bisect_left(times, edges[k + 1]) - bisect.bisect_left(times, edges[k])
        for k in range(count)
    ]


async def test_sends_never_exceed_the_rate_limit_and_use_most_of_it(tmp_path: Path) -> None:
    database = tmp_path / "adapter.sqlite3"
    await fill_outbox(database)
    emulator_sock, emulator_url = bound_socket()
    adapter_sock, adapter_url = bound_socket()
    settings, warnings = load_settings(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SMS_ADAPTER_RATE_LIMIT": f"{LIMIT}/{WINDOW:g}s",
            "SMS_ADAPTER_TWILIO_BASE_URL": emulator_url,
            "SMS_ADAPTER_PUBLIC_URL": adapter_url,
            "SMS_ADAPTER_DATABASE": str(database),
        }
    )
    assert warnings == []
    state = EmulatorState()
    recorder = ArrivalRecorder(
        create_emulator_app(
            EmulatorConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, numbers=[OURS]), state
        )
    )
    emulator = recorder
    async with httpx.AsyncClient(transport=ColdStartTransport()) as http:
        channel = build_channel(settings, http=http)
        adapter = create_app(settings, channel=channel)
        async with serve(emulator, emulator_sock), serve(adapter, adapter_sock):

            async def drained() -> bool:
                return (await channel.store.outbox_stats()).depth == 0

            await wait_for(drained, timeout=30, interval=0.05)

    creates = sorted(recorder.creates)
    assert len(creates) == REPLIES
    assert len([m for m in state.messages() if m.direction == "outbound-api"]) == REPLIES
    assert most_in_any_window(creates, WINDOW - STAMP_SLACK) <= LIMIT
    busy = whole_windows_from(creates, WINDOW)
    assert len(busy) >= 3, busy
    assert sum(busy) >= 0.9 * LIMIT * len(busy), busy
