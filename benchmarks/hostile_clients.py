"""Signed webhooks while hostile clients flood or hold the adapter, against a quiet baseline.

    python benchmarks/hostile_clients.py [--seconds 60] [--rate 20] [--slow 2000] [--reconnect-after 1]

`sms-adapter serve` (SQLite, the echo bot, default connection settings) on loopback; Twilio
is the emulator. Three phases of `--seconds` each, the same signed webhooks posted at
`--rate` per second in each, their answer times noted:

1. quiet: nothing else;
2. flood: 16 connections post worst-case unsigned bodies as fast as the adapter answers:
   32 KiB (the cap) of `%`, 200 parameters of long %-escaped values, thousands of
   parameters, each with a made-up X-Twilio-Signature so that the body is read and judged;
3. slow: `--slow` connections open at once, each sending half a request's headers and
   never the rest (and reopened `--reconnect-after` seconds after being dropped), the
   way slowloris does, from a process of their own.

Prints p50/p99 of the signed webhooks in each phase, the flood's request rate, how many
slow connections the adapter dropped, and the most file descriptors it held.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.web.webhooks import MAX_BODY_BYTES
from benchmarks.support import (
    adapter_env,
    free_port,
    percentile,
    process,
    signed_form,
    sms_adapter,
)

FORM = "application/x-www-form-urlencoded"
# As large as the webhook takes (MAX_BODY_BYTES), each costly in its own way.
WORST_BODIES = [
    b"%" * MAX_BODY_BYTES,
    b"&".join(b"p%03d=" % i + b"%41" * (MAX_BODY_BYTES // 600) for i in range(200)),
    b"&".join(b"a=1" for _ in range(21_000))[:MAX_BODY_BYTES],
]


async def signed_load(
    url: str, forms: list[tuple[str, str]], rate: int, seconds: float
) -> tuple[list[float], int]:
    """Post signed webhooks on a fixed schedule; (answer times in ms, failures)."""
    times: list[float] = []
    failures = 0
    async with httpx.AsyncClient(timeout=15) as client:

        async def one(body: str, signature: str) -> None:
            nonlocal failures
            started = time.perf_counter()
            try:
                response = await client.post(
                    url,
                    content=body,
                    headers={"Content-Type": FORM, "X-Twilio-Signature": signature},
                )
                ok = response.status_code == 200
            except httpx.TransportError:
                ok = False
            if ok:
                times.append((time.perf_counter() - started) * 1000)
            else:
                failures += 1

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(*forms.pop())))
        await asyncio.gather(*tasks)
    return times, failures


async def flood(port: int, stop: asyncio.Event) -> int:
    """16 kept-alive connections posting worst-case unsigned bodies back to back, from
    prebuilt bytes over raw sockets (so this script's CPU goes to the adapter's load, not
    to building requests); requests answered."""
    requests = [
        b"POST /api/sms HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + FORM.encode()
        + b"\r\nX-Twilio-Signature: " + b"x" * 28
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        for body in WORST_BODIES
    ]  # fmt: skip
    answered = 0

    async def connection(index: int) -> None:
        nonlocal answered
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                while not stop.is_set():
                    writer.write(requests[(index + answered) % len(requests)])
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    answered += 1
                    if b"connection: close" in head.lower():
                        break
                writer.close()
            except (OSError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.01)

    await asyncio.gather(*(connection(i) for i in range(16)))
    return answered


async def slow_clients(port: int, count: int, stop: asyncio.Event, reconnect_after: float) -> int:
    """Hold `count` half-sent requests open, reopening each one dropped; drops seen."""
    dropped = 0

    async def hold() -> None:
        nonlocal dropped
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /api/sms HTTP/1.1\r\nHost: x\r\nContent-Type: ")
                await writer.drain()
            except OSError:
                await asyncio.sleep(0.5)
                continue
            reading = asyncio.ensure_future(reader.read())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
            if reading.done():
                dropped += 1
            reading.cancel()
            stopping.cancel()
            writer.close()
            await asyncio.sleep(reconnect_after)

    await asyncio.gather(*(hold() for _ in range(count)))
    return dropped


def _hold_slow_clients(
    port: int, count: int, seconds: float, reconnect_after: float, dropped: Any
) -> None:
    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        dropped.value = await slow_clients(port, count, stop, reconnect_after)

    asyncio.run(run())


async def watch_descriptors(pid: int, stop: asyncio.Event) -> int:
    most = 0
    while not stop.is_set():
        with contextlib.suppress(OSError):
            most = max(most, len(os.listdir(f"/proc/{pid}/fd")))
        await asyncio.sleep(0.5)
    return most


def line(name: str, times: list[float], failures: int) -> str:
    if not times:
        return f"{name:6} no signed webhook answered ({failures} failed)"
    return (
        f"{name:6} signed webhooks: p50 {percentile(times, 0.5):6.1f} ms   "
        f"p99 {percentile(times, 0.99):6.1f} ms   failed {failures}"
    )


async def measure(args: argparse.Namespace, pid: int, base: str, port: int) -> None:
    url = f"{base}/api/sms"
    per_phase = int(args.rate * args.seconds)
    forms = [signed_form(url, i, f"+1555{i % 9000000:07d}", "hi") for i in range(3 * per_phase)]
    forms.reverse()

    quiet = await signed_load(url, forms, args.rate, args.seconds)
    print(line("quiet", *quiet), flush=True)

    stop = asyncio.Event()
    flooding = asyncio.create_task(flood(port, stop))
    fds = asyncio.create_task(watch_descriptors(pid, stop))
    await asyncio.sleep(1)
    flooded = await signed_load(url, forms, args.rate, args.seconds)
    stop.set()
    sent, most_fds = await flooding, await fds
    print(line("flood", *flooded) + f"   ({sent / (args.seconds + 1):.0f} unsigned req/s)")

    # The slow clients run in a process of their own, as an attacker would: their
    # reconnecting must not starve this process's own measurement.
    stop = asyncio.Event()
    dropped_count = multiprocessing.Value("q", 0)
    holding = multiprocessing.Process(
        target=_hold_slow_clients,
        args=(port, args.slow, args.seconds + 2, args.reconnect_after, dropped_count),
    )
    holding.start()
    fds = asyncio.create_task(watch_descriptors(pid, stop))
    await asyncio.sleep(2)
    slowed = await signed_load(url, forms, args.rate, args.seconds)
    stop.set()
    await asyncio.to_thread(holding.join)
    dropped, most_fds = dropped_count.value, max(most_fds, await fds)
    print(
        line("slow", *slowed)
        + f"   ({args.slow} held open; {dropped} dropped by the adapter and reopened)"
    )
    print(f"most file descriptors held by the adapter: {most_fds}")
    for name, (times, _) in (("flood", flooded), ("slow", slowed)):
        if times and quiet[0]:
            ratio = percentile(times, 0.99) / percentile(quiet[0], 0.99)
            print(f"{name}: p99 is {ratio:.1f}x the quiet p99 (target: p99 under 100 ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument(
        "--reconnect-after",
        type=float,
        default=1.0,
        help="seconds a slow client waits to reconnect once dropped (0: at once)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        twilio_port, port = free_port(), free_port()
        twilio, base = f"http://127.0.0.1:{twilio_port}", f"http://127.0.0.1:{port}"
        env = adapter_env(str(Path(tmp) / "hostile.sqlite3"), base, twilio, "bots.echo:router")
        emulator = sms_adapter("emulator", "--port", str(twilio_port))
        with (
            process(emulator, env, f"{twilio}/_emulator/messages"),
            process(sms_adapter("serve", "--port", str(port)), env, f"{base}/readyz") as adapter,
        ):
            asyncio.run(measure(args, adapter.pid, base, port))


if __name__ == "__main__":
    main()
