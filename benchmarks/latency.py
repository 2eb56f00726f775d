"""End-to-end latency: from the webhook answered 200 to Send Message received by Twilio,
at a steady rate (default 200 texts/s).

    python benchmarks/latency.py [--rate 200] [--seconds 10]

The adapter runs as `sms-adapter serve` in its own process (SQLite, synchronous=FULL, the
echo bot). This process plays Twilio: it posts signed webhooks on a fixed schedule over
several connections, and serves Twilio's REST API with the built-in emulator, noting the
moment each reply's Send Message arrives. Both clocks are this machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.twilio.emulator import EmulatorConfig, create_emulator_app
from benchmarks.support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    OUR_NUMBER,
    adapter_env,
    free_port,
    percentile,
    process,
    signed_form,
    sms_adapter,
)

Scope = dict[str, Any]


class SendRecorder:
    """ASGI middleware noting when each Send Message request arrives, by its Body."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.arrivals: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/Messages.json")
        ):
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        form = dict(parse_qsl(body.decode()))
        self.arrivals.setdefault(form.get("Body", ""), arrived)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def run(args: argparse.Namespace) -> None:
    twilio_port, adapter_port = free_port(), free_port()
    twilio_url, adapter_url = f"http://127.0.0.1:{twilio_port}", f"http://127.0.0.1:{adapter_port}"
    recorder = SendRecorder(
        create_emulator_app(
            EmulatorConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, numbers=[OUR_NUMBER])
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(recorder, host="127.0.0.1", port=twilio_port, log_level="warning")
    )
    server_task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.05)

    total = args.rate * args.seconds
    webhook_url = f"{adapter_url}/api/sms"
    forms = [
        signed_form(webhook_url, i, f"+1555{i % 1000:07d}", f"latency {i}") for i in range(total)
    ]
    answered: dict[str, float] = {}
    failures = 0

    with tempfile.TemporaryDirectory(prefix="latency-bench-") as scratch:
        env = adapter_env(
            str(Path(scratch) / "latency.sqlite3"), adapter_url, twilio_url, "bots.echo:router"
        )
        command = sms_adapter("serve", "--port", str(adapter_port))
        with process(command, env, f"{adapter_url}/readyz"):
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
                        answered[f"You said: latency {i}"] = time.perf_counter()
                    else:
                        failures += 1

                start = time.perf_counter()
                tasks = []
                for i in range(total):
                    # A steady schedule, not "as fast as possible": latency at a given load.
                    delay = start + i / args.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(deliver(i)))
                await asyncio.gather(*tasks)
                offered = total / (time.perf_counter() - start)
                deadline = time.perf_counter() + 30
                while len(recorder.arrivals) < len(answered) and time.perf_counter() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)

    server.should_exit = True
    await server_task
    latencies = [
        (recorder.arrivals[body] - acked) * 1000
        for body, acked in answered.items()
        if body in recorder.arrivals
    ]
    print(
        f"texts offered     : {total} at {offered:.0f}/s over {args.seconds}s (webhook failures: {failures})"
    )
    print(f"replies received  : {len(latencies)} of {len(answered)} acknowledged")
    if latencies:
        print(
            f"webhook 200 → Send Message at Twilio: p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms   (target p99 <= 50 ms)"
        )


def main() -> None:
    # Callbacks still in flight when the adapter stops would each log a failure.
    logging.getLogger("adapter.twilio.emulator").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
