"""End-to-end latency: from the webhook answered 200 to Send Message received by Twilio,
at a steady rate (default 200 texts/s).

    python benchmarks/latency.py [--rate 200] [--seconds 10]

Three processes on loopback: the adapter (`sms-adapter serve`: SQLite with
synchronous=FULL, the echo bot, status callbacks on), Twilio (the built-in emulator,
noting when each Send Message arrives: benchmarks/recording_twilio.py), and this script,
which posts signed webhooks on a fixed schedule and notes when each 200 comes back.
Latency = arrival of the reply's Send Message - arrival of the webhook's 200 (one clock).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import (
    adapter_env,
    free_port,
    percentile,
    process,
    signed_form,
    sms_adapter,
)


async def offer_load(
    webhook_url: str, forms: list[tuple[str, str]], rate: int
) -> tuple[dict[str, float], int, float]:
    answered: dict[str, float] = {}
    failures = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def deliver(i: int) -> None:
            nonlocal failures
            body, signature = forms[i]
            response = await client.post(
                webhook_url,
                content=body,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )
            if response.status_code == 200:
                answered[f"You said: latency {i}"] = time.time()
            else:
                failures += 1

        start = time.perf_counter()
        tasks = []
        for i in range(len(forms)):
            # A steady schedule, not "as fast as possible": latency at a given load.
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(deliver(i)))
        offered = len(forms) / (time.perf_counter() - start)
        await asyncio.gather(*tasks)
    return answered, failures, offered


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--no-callbacks",
        action="store_true",
        help="the emulated Twilio sends no status callbacks (fewer processes competing for CPU)",
    )
    args = parser.parse_args()

    twilio_port, adapter_port = free_port(), free_port()
    twilio_url, adapter_url = f"http://127.0.0.1:{twilio_port}", f"http://127.0.0.1:{adapter_port}"
    webhook_url = f"{adapter_url}/api/sms"
    total = args.rate * args.seconds
    forms = [
        signed_form(webhook_url, i, f"+1555{i % 1000:07d}", f"latency {i}") for i in range(total)
    ]
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as scratch:
        env = adapter_env(
            str(Path(scratch) / "latency.sqlite3"), adapter_url, twilio_url, "bots.echo:router"
        )
        env["BENCH_STATUS_CALLBACKS"] = "0" if args.no_callbacks else "1"
        twilio = [
            sys.executable, "-m", "uvicorn", "--factory", "benchmarks.recording_twilio:build",
            "--host", "127.0.0.1", "--port", str(twilio_port), "--log-level", "warning",
            "--no-access-log",
        ]  # fmt: skip
        with (
            process(twilio, env, f"{twilio_url}/_bench/arrivals"),
            process(
                sms_adapter("serve", "--port", str(adapter_port)), env, f"{adapter_url}/readyz"
            ),
        ):
            answered, failures, offered = asyncio.run(offer_load(webhook_url, forms, args.rate))
            deadline = time.monotonic() + 30
            while True:
                arrivals: dict[str, float] = httpx.get(
                    f"{twilio_url}/_bench/arrivals", timeout=60
                ).json()
                if len(arrivals) >= len(answered) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)

    latencies = [
        (arrivals[body] - acked) * 1000 for body, acked in answered.items() if body in arrivals
    ]
    print(
        f"texts offered     : {total} at {offered:.0f}/s over {args.seconds}s (webhook failures: {failures})"
    )
    print(f"replies received  : {len(latencies)} of {len(answered)} acknowledged")
    if latencies:
        print(
            f"webhook 200 → Send Message at Twilio: p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms"
            "   (target p99 <= 50 ms)"
        )


if __name__ == "__main__":
    main()
