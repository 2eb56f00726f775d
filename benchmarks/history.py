"""Rebuild a long conversation from Twilio: the history service against what a user writes
with the official twilio library, measured in one run against the same emulator.

    python benchmarks/history.py [--messages 10000] [--latency-ms 50] [--rounds 2]

`sms-adapter emulator --latency-ms 50` runs in its own process on loopback (50 ms added to
every REST answer stands in for the network) and is seeded with one conversation of
`--messages` texts, half each way, over the last three days. Then, best of `--rounds`:

- the official client as usually written: `client.messages.list(from_=person, to=ours)`,
  then the other direction, then a sort by date (its default page size, 50);
- the same with `page_size=1000` (what a user who read the paging docs writes);
- `HistoryService.sync` on an empty store (both directions at once, PageSize 1000, every
  page cached in SQLite as it comes) and the whole conversation read back from the cache.

Last, 10 new texts arrive and the service syncs again: the requests it makes are counted;
and the peak Python memory (tracemalloc) of a full sync is set against the official
client's with page_size=1000, which holds every message.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twilio.rest import Client

from adapter.history.service import HistoryService, SyncReport
from adapter.ratelimit import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_RATE,
    AccountLimiter,
)
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.messages import ConversationKey
from benchmarks.support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    OUR_NUMBER,
    free_port,
    process,
    sms_adapter,
)

PERSON = "+15551234567"
KEY = ConversationKey(ours=OUR_NUMBER, person=PERSON)
T = TypeVar("T")


def best_of(rounds: int, run: Callable[[], tuple[float, T]]) -> tuple[float, T]:
    results = [run() for _ in range(rounds)]
    return min(results, key=lambda result: result[0])


def official(base_url: str, page_size: int | None) -> tuple[float, tuple[int, int]]:
    """Two sequential list() calls and a merge, as the twilio library's docs show."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN)
    client.api.base_url = base_url
    requests = 0
    send = client.http_client.request

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal requests
        requests += 1
        return send(*args, **kwargs)

    client.http_client.request = counted
    started = time.perf_counter()
    inbound = client.messages.list(from_=PERSON, to=OUR_NUMBER, page_size=page_size)
    outbound = client.messages.list(from_=OUR_NUMBER, to=PERSON, page_size=page_size)
    merged = sorted(inbound + outbound, key=lambda m: (m.date_sent or m.date_created, m.sid))
    elapsed = time.perf_counter() - started
    client.http_client.session.close()
    return elapsed, (len(merged), requests)


def official_peak_mb(base_url: str) -> float:
    """Peak Python memory of the official client's two list() calls (page_size=1000)."""
    tracemalloc.start()
    try:
        official(base_url, 1000)
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


async def sync_peak_mb(base_url: str, database: Path) -> float:
    """Peak Python memory of a full sync into an empty cache (the read-back aside): pages
    go to the store as they come, so it should not grow with the conversation."""
    ours = Ours(base_url, database)
    await ours.store.open()
    tracemalloc.start()
    try:
        report = await ours.service.sync(KEY)
        assert report.kind == "full"
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
        await ours.close()


class Ours:
    """The history service over one httpx client that counts the requests it sends."""

    def __init__(self, base_url: str, database: Path) -> None:
        self.requests = 0
        self.http = httpx.AsyncClient(event_hooks={"request": [self._count]})
        self.store = SQLiteStore(database)
        client = TwilioClient(
            Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), base_url, http=self.http
        )
        limiter = AccountLimiter(max_concurrency=DEFAULT_MAX_CONCURRENCY, rate=DEFAULT_RATE)
        self.service = HistoryService(self.store, client, limiter)

    async def _count(self, request: httpx.Request) -> None:
        self.requests += 1

    async def sync(self, limit: int) -> tuple[float, tuple[int, SyncReport]]:
        started = time.perf_counter()
        report = await self.service.sync(KEY)
        whole = await self.service.read(KEY, limit=limit)
        return time.perf_counter() - started, (len(whole), report)

    async def close(self) -> None:
        await self.store.close()
        await self.http.aclose()


async def full_rebuild(base_url: str, database: Path, limit: int) -> tuple[float, tuple[int, int]]:
    ours = Ours(base_url, database)
    await ours.store.open()
    try:
        elapsed, (count, report) = await ours.sync(limit)
        assert report.kind == "full"
        return elapsed, (count, ours.requests)
    finally:
        await ours.close()


async def incremental(
    base_url: str, database: Path, limit: int
) -> tuple[float, int, int, SyncReport]:
    ours = Ours(base_url, database)
    await ours.store.open()
    try:
        await ours.sync(limit)  # the rebuild the later sync builds on
        seed(base_url, 10, start=datetime.now(UTC))
        ours.requests = 0
        elapsed, (count, report) = await ours.sync(limit)
        return elapsed, count, ours.requests, report
    finally:
        await ours.close()


def seed(base_url: str, count: int, start: datetime | None = None) -> None:
    body: dict[str, Any] = {"ours": OUR_NUMBER, "person": PERSON, "count": count}
    if start is not None:
        body |= {"start": start.isoformat(), "interval_seconds": 1}
    httpx.post(f"{base_url}/_emulator/seed", json=body, timeout=120).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env |= {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}
    env["SMS_ADAPTER_LOG_LEVEL"] = "warning"
    emulator = sms_adapter("emulator", "--port", str(port), "--latency-ms", str(args.latency_ms))
    limit = args.messages + 100

    with (
        process(emulator, env, f"{base_url}/_emulator/messages"),
        tempfile.TemporaryDirectory(prefix="history-bench-") as scratch,
    ):
        seed(base_url, args.messages)
        databases = iter(Path(scratch) / f"round{n}.sqlite3" for n in range(args.rounds + 2))
        plain_s, (plain_n, plain_requests) = best_of(args.rounds, lambda: official(base_url, None))
        paged_s, (paged_n, paged_requests) = best_of(args.rounds, lambda: official(base_url, 1000))
        ours_s, (ours_n, ours_requests) = best_of(
            args.rounds, lambda: asyncio.run(full_rebuild(base_url, next(databases), limit))
        )
        again_s, again_n, again_requests, report = asyncio.run(
            incremental(base_url, next(databases), limit)
        )
        official_mb = official_peak_mb(base_url)
        sync_mb = asyncio.run(sync_peak_mb(base_url, next(databases)))

    assert plain_n == paged_n == ours_n == args.messages, (plain_n, paged_n, ours_n)
    assert again_n == args.messages + 10, again_n
    assert again_requests == report.requests, (again_requests, report)
    rows = [
        ("official client, two list() calls (page size 50)", plain_s, plain_requests),
        ("official client, two list() calls, page_size=1000", paged_s, paged_requests),
        ("history service, full rebuild into the cache", ours_s, ours_requests),
    ]
    print(
        f"A {args.messages:,}-message conversation; emulator with --latency-ms {args.latency_ms}, "
        f"best of {args.rounds}"
    )
    for name, seconds, requests in rows:
        print(f"  {name:<52} {seconds:7.2f} s  {requests:4d} requests")
    print(
        f"  full rebuild vs the official client as usually written: {plain_s / ours_s:5.1f}x faster (target >= 2x)"
    )
    print(
        f"  full rebuild vs the official client with page_size=1000: {paged_s / ours_s:4.1f}x faster"
    )
    print(
        f"  incremental re-sync after 10 new messages: {again_requests} requests (target <= 4), "
        f"{again_s:.2f} s"
    )
    print(
        f"  peak Python memory (tracemalloc): full sync {sync_mb:.1f} MB, official client "
        f"with page_size=1000 {official_mb:.1f} MB ({official_mb / sync_mb:.1f}x)"
    )


if __name__ == "__main__":
    main()
