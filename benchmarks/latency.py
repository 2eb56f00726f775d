"""End to end: texts answered, from the webhook sent to the reply's Send Message received
by Twilio, for the adapter and for a bare relay measured in the same run.

    python benchmarks/latency.py [--step-seconds 5] [--seconds 10] [--sustain-seconds 20]

Processes, all on loopback: the adapter (`sms-adapter serve`, the echo bot, SQLite with
synchronous=FULL, rate limit raised so sends keep up); the emulated Twilio
(benchmarks/recording_twilio.py: the built-in emulator noting when each Send Message
arrives); the baseline (benchmarks/baselines.py /relay: a Starlette endpoint that answers
200, then posts the same reply to the same emulator with httpx: no signature check, no
store); and this script, which sends signed webhooks on a fixed schedule from raw
keep-alive connections (benchmarks/loadgen.py). Latency = arrival of the reply's Send
Message at Twilio - the moment the webhook was written (one clock, one machine).

Phases, each for the adapter then the relay:
1. sustainable rate, callbacks off: rates rise step by step (--step-seconds each); a step
   keeps up when the rate was offered, every webhook got its 200, every reply arrived
   within 2 s of the last webhook and p99 stayed under 500 ms. The figure is the highest
   step that kept up (a step ladder, so it is a lower bound within one step);
2. p50/p99 at half the adapter's sustainable rate, callbacks off;
3. p99 at a steady 200 texts/s with status callbacks on (3 signed callbacks per reply,
   posted by the emulator to the server), and CPU per answered text (the server process's
   user+sys time from /proc, callbacks included, divided by the replies);
4. 1,000 texts/s for --sustain-seconds, callbacks off: answered and kept up, or not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import echo_webhooks, offer
from benchmarks.support import (
    adapter_env,
    arrivals,
    cpu_seconds,
    emulated_twilio,
    free_port,
    machine,
    percentile,
    process,
    server_stack,
    set_callbacks,
    sms_adapter,
    uvicorn_app,
)

LADDER = [100, 200, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000, 2500, 3000, 4000]
GRACE_SECONDS = 2.0
KEEPS_UP_P99_MS = 500.0


@dataclass
class Server:
    name: str
    port: int
    path: str
    pid: int


@dataclass
class Step:
    target_rate: float
    offered_rate: float
    sent: int
    answered: int  # replies that reached Twilio within the grace period
    failures: int
    latencies: list[float]  # ms
    cpu_ms_per_text: float
    twilio_cores: float  # the emulated Twilio's CPU while the step ran, in cores

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.5) if self.latencies else float("inf")

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99) if self.latencies else float("inf")

    @property
    def kept_up(self) -> bool:
        return (
            self.offered_rate >= 0.95 * self.target_rate
            and self.failures == 0
            and self.answered == self.sent
            and self.p99 <= KEEPS_UP_P99_MS
        )

    @property
    def verdict(self) -> str:
        return "yes" if self.kept_up else "no"

    def line(self) -> str:
        return (
            f"{self.target_rate:5.0f}/s offered {self.offered_rate:5.0f}/s: answered"
            f" {self.answered}/{self.sent}, p50 {self.p50:7.1f} ms, p99 {self.p99:7.1f} ms,"
            f" failures {self.failures}, CPU {self.cpu_ms_per_text:.2f} ms/text"
            f" (emulated Twilio {self.twilio_cores:.2f} cores)"
            f" -> {'keeps up' if self.kept_up else 'falls behind'}"
        )


class Bench:
    def __init__(self, twilio_url: str, twilio_pid: int) -> None:
        self.twilio_url = twilio_url
        self.twilio_pid = twilio_pid
        self.phase = 0

    def step(self, server: Server, rate: float, seconds: float) -> Step:
        self.phase += 1
        prefix = f"p{self.phase}-"
        webhooks = echo_webhooks(
            server.port, server.path, prefix, int(rate * seconds), first=self.phase * 10_000_000
        )
        cpu_before, twilio_before = cpu_seconds(server.pid), cpu_seconds(self.twilio_pid)
        offered = asyncio.run(offer(server.port, webhooks, rate))
        twilio_cores = (cpu_seconds(self.twilio_pid) - twilio_before) / offered.seconds
        deadline = time.monotonic() + GRACE_SECONDS
        while True:
            arrived = arrivals(self.twilio_url, f"You said: {prefix}")
            if len(arrived) >= len(webhooks) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        late = time.monotonic() + 60  # let a backlog drain before the next step starts
        while len(arrivals(self.twilio_url, f"You said: {prefix}")) < offered.ok:
            if time.monotonic() > late:
                break
            time.sleep(0.5)
        time.sleep(0.5)  # the last status callbacks
        cpu = cpu_seconds(server.pid) - cpu_before
        replies = len(arrivals(self.twilio_url, f"You said: {prefix}"))
        latencies = [
            (arrived[reply] - sent) * 1000
            for reply, sent in offered.sent_at.items()
            if reply in arrived
        ]
        return Step(
            rate,
            offered.rate,
            len(webhooks),
            len(latencies),
            offered.failures,
            latencies,
            cpu / max(replies, 1) * 1000,
            twilio_cores,
        )

    def sustainable(self, server: Server, seconds: float) -> float:
        best = 0.0
        for rate in LADDER:
            step = self.step(server, rate, seconds)
            print(f"  {server.name:8} {step.line()}", flush=True)
            if not step.kept_up:
                break
            best = rate
        return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--step-seconds", type=float, default=5, help="each step of the ladder")
    parser.add_argument("--seconds", type=float, default=10, help="the latency phases")
    parser.add_argument("--sustain-seconds", type=float, default=20, help="the 1,000/s phase")
    args = parser.parse_args()

    print(f"machine: {machine()}; server stack: {server_stack()}", flush=True)
    twilio_port, adapter_port, relay_port = free_port(), free_port(), free_port()
    twilio_url = f"http://127.0.0.1:{twilio_port}"
    adapter_url, relay_url = f"http://127.0.0.1:{adapter_port}", f"http://127.0.0.1:{relay_port}"
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as scratch:
        env = adapter_env(
            str(Path(scratch) / "latency.sqlite3"), adapter_url, twilio_url, "bots.echo:router"
        )
        relay_env = {**env, "SMS_ADAPTER_PUBLIC_URL": relay_url}
        with (
            emulated_twilio(twilio_port, env) as twilio,
            process(
                sms_adapter("serve", "--port", str(adapter_port)), env, f"{adapter_url}/readyz"
            ) as adapter_process,
            process(
                uvicorn_app("benchmarks.baselines:app", relay_port),
                relay_env,
                f"{relay_url}/readyz",
            ) as relay_process,
        ):
            adapter = Server("adapter", adapter_port, "/api/sms", adapter_process.pid)
            relay = Server("relay", relay_port, "/relay", relay_process.pid)
            servers = (adapter, relay)
            bench = Bench(twilio_url, twilio.pid)

            print("1. sustainable rate, status callbacks off")
            rates = {s.name: bench.sustainable(s, args.step_seconds) for s in servers}
            half = max(rates["adapter"] / 2, 50)
            print(f"2. at half the adapter's sustainable rate ({half:.0f}/s), callbacks off")
            at_half = {s.name: bench.step(s, half, args.seconds) for s in servers}
            print("3. at 200/s, status callbacks on")
            set_callbacks(twilio_url, True)
            at_200 = {s.name: bench.step(s, 200, args.seconds) for s in servers}
            set_callbacks(twilio_url, False)
            print("4. 1,000/s sustained, callbacks off")
            at_1000 = {s.name: bench.step(s, 1000, args.sustain_seconds) for s in servers}
            for name, steps in (("2", at_half), ("3", at_200), ("4", at_1000)):
                for server, step in steps.items():
                    print(f"  {name}. {server:8} {step.line()}")

    print()
    print(f"{'':44}{'adapter':>22}{'bare relay':>22}")
    a, r = at_half["adapter"], at_half["relay"]
    print(
        f"{'sustainable rate (callbacks off)':44}{rates['adapter']:>20.0f}/s{rates['relay']:>20.0f}/s"
    )
    print(
        f"{f'p50 / p99 at {half:.0f}/s (callbacks off)':44}"
        f"{f'{a.p50:.1f} / {a.p99:.1f} ms':>22}{f'{r.p50:.1f} / {r.p99:.1f} ms':>22}"
    )
    a, r = at_200["adapter"], at_200["relay"]
    print(
        f"{'p99 at 200/s, callbacks on (target <= 50)':44}"
        f"{f'{a.p99:.1f} ms':>22}{f'{r.p99:.1f} ms':>22}"
    )
    print(
        f"{'CPU per answered text at 200/s, callbacks on':44}"
        f"{f'{a.cpu_ms_per_text:.2f} ms':>22}{f'{r.cpu_ms_per_text:.2f} ms':>22}"
    )
    a, r = at_1000["adapter"], at_1000["relay"]
    print(
        f"{f'1,000/s for {args.sustain_seconds:.0f} s, answered (kept up?)':44}"
        f"{f'{a.answered}/{a.sent} ({a.verdict})':>22}"
        f"{f'{r.answered}/{r.sent} ({r.verdict})':>22}"
    )


if __name__ == "__main__":
    main()
