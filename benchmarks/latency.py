"""End to end: texts answered, from the webhook sent to the reply's Send Message received
by Twilio, for the adapter and for a bare relay measured in the same run.

    python benchmarks/latency.py [--step-seconds 5] [--seconds 10] [--sustain-seconds 20]
        [--twilio lean|emulator] [--adapter-root PATH] [--compare-root PATH]

Processes, all on loopback: the adapter (`sms-adapter serve`, the echo bot, SQLite with
synchronous=FULL, rate limit raised so sends keep up), run from this checkout or from
--adapter-root (same venv); with --compare-root, a second adapter from that checkout
(e.g. the commit before a change), taking its turn beside the first in every phase; the
emulated Twilio noting when each Send Message arrives (benchmarks/lean_twilio.py by
default, cheap enough not to be the limit; --twilio emulator: the built-in emulator,
benchmarks/recording_twilio.py); the baseline (benchmarks/baselines.py /relay: a Starlette
endpoint that answers 200, then posts the same reply to the same Twilio over the adapter's
own HTTP stack, httpx over aiohttp's pool: no signature check, no store); and this
script, which sends signed webhooks on a fixed schedule from raw keep-alive connections
(benchmarks/loadgen.py). Latency = arrival of the reply's Send Message at Twilio - the
moment the webhook was written (one clock, one machine).

Phases, each for the adapter(s) then the relay:
1. sustainable rate, callbacks off: rates rise step by step (--step-seconds each); a step
   keeps up when the rate was offered, every webhook got its 200, every reply arrived
   within 2 s of the last webhook and p99 stayed under 500 ms. The figure is the highest
   step that kept up (a step ladder, so it is a lower bound within one step; the servers
   take turns at each step);
2. p50/p99 at half the adapter's sustainable rate, callbacks off;
3. p99 at a steady 200 texts/s with status callbacks on (3 signed callbacks per reply,
   posted by the emulated Twilio to the server; the lean one also says how they were
   answered), and CPU per answered text (the server process's user+sys time from /proc,
   callbacks included, divided by the replies);
4. 1,000 texts/s for --sustain-seconds, callbacks off: answered and kept up, or not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import echo_webhooks, offer
from benchmarks.support import (
    adapter_env,
    add_setup_options,
    arrivals,
    await_callbacks,
    bench_env,
    callback_answers,
    cpu_seconds,
    describe_callbacks,
    emulated_twilio,
    free_port,
    machine,
    percentile,
    process,
    sends_received,
    server_stack,
    set_callbacks,
    setup_lines,
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
    worst_lag: float  # s: how late the generator wrote a webhook, at worst (all busy)

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
            f" failures {self.failures}, sent late by up to {self.worst_lag * 1000:.0f} ms,"
            f" CPU {self.cpu_ms_per_text:.2f} ms/text"
            f" (emulated Twilio {self.twilio_cores:.2f} cores)"
            f" -> {'keeps up' if self.kept_up else 'falls behind'}"
        )


class Bench:
    def __init__(self, twilio_url: str, twilio_pid: int) -> None:
        self.twilio_url = twilio_url
        self.twilio_pid = twilio_pid
        self.phase = 0
        self.callbacks = False  # whether the emulated Twilio posts status callbacks now

    def set_callbacks(self, on: bool) -> None:
        set_callbacks(self.twilio_url, on)
        self.callbacks = on

    def step(self, server: Server, rate: float, seconds: float) -> Step:
        self.phase += 1
        prefix = f"p{self.phase}-"
        webhooks = echo_webhooks(
            server.port, server.path, prefix, int(rate * seconds), first=self.phase * 10_000_000
        )
        cpu_before, twilio_before = cpu_seconds(server.pid), cpu_seconds(self.twilio_pid)
        callbacks_before = callback_answers(self.twilio_url, server.port)
        sends_before, started = sends_received(self.twilio_url), time.monotonic()
        offered = asyncio.run(offer(server.port, webhooks, rate))
        twilio_cores = (cpu_seconds(self.twilio_pid) - twilio_before) / (time.monotonic() - started)

        # Counted, not listed, while replies arrive: listing them costs the emulated
        # Twilio's one loop enough to delay the arrivals it timestamps. One server runs
        # at a time, so every Send Message counted now is this step's.
        def replies_so_far() -> int:
            return sends_received(self.twilio_url) - sends_before

        deadline = time.monotonic() + GRACE_SECONDS
        while replies_so_far() < len(webhooks) and time.monotonic() < deadline:
            time.sleep(0.1)
        arrived = arrivals(self.twilio_url, f"You said: {prefix}")  # those within the grace
        late = time.monotonic() + 60  # let a backlog drain before the next step starts
        while replies_so_far() < offered.ok and time.monotonic() < late:
            time.sleep(0.5)
        replies = replies_so_far()
        if self.callbacks:
            await_callbacks(self.twilio_url, server.port, callbacks_before, 3 * replies)
        else:
            time.sleep(0.5)
        cpu = cpu_seconds(server.pid) - cpu_before
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
            offered.worst_lag,
        )

    def sustainable(self, servers: list[Server], seconds: float) -> dict[str, float]:
        """Each server's highest step that kept up. The servers take turns at each step,
        so they climb on the machine as it is at the same moments."""
        best = {server.name: 0.0 for server in servers}
        climbing = list(servers)
        for rate in LADDER:
            for server in list(climbing):
                step = self.step(server, rate, seconds)
                print(f"  {server.name:8} {step.line()}", flush=True)
                if step.kept_up:
                    best[server.name] = rate
                else:
                    climbing.remove(server)
            if not climbing:
                break
        return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--step-seconds", type=float, default=5, help="each step of the ladder")
    parser.add_argument("--seconds", type=float, default=10, help="the latency phases")
    parser.add_argument("--sustain-seconds", type=float, default=20, help="the 1,000/s phase")
    add_setup_options(parser, "taking turns with it in every phase")
    args = parser.parse_args()

    print(f"machine: {machine()}; server stack: {server_stack()}", flush=True)
    for line in setup_lines(args):
        print(line, flush=True)
    twilio_port, relay_port = free_port(), free_port()
    twilio_url, relay_url = f"http://127.0.0.1:{twilio_port}", f"http://127.0.0.1:{relay_port}"
    roots = [("adapter", args.adapter_root)]
    if args.compare_root is not None:
        roots.append(("compare", args.compare_root))
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as scratch, ExitStack() as running:
        # The emulated Twilio and the relay: this checkout's benchmarks.
        relay_env = bench_env(
            adapter_env(
                str(Path(scratch) / "unused.sqlite3"), relay_url, twilio_url, "bots.echo:router"
            )
        )
        twilio = running.enter_context(emulated_twilio(twilio_port, relay_env, args.twilio))
        servers = []
        for name, root in roots:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            env = adapter_env(
                str(Path(scratch) / f"{name}.sqlite3"), url, twilio_url, "bots.echo:router", root
            )
            adapter = running.enter_context(
                process(sms_adapter("serve", "--port", str(port)), env, f"{url}/readyz", cwd=root)
            )
            servers.append(Server(name, port, "/api/sms", adapter.pid))
        relay_process = running.enter_context(
            process(
                uvicorn_app("benchmarks.baselines:app", relay_port),
                relay_env,
                f"{relay_url}/readyz",
            )
        )
        servers.append(Server("relay", relay_port, "/relay", relay_process.pid))
        names = [server.name for server in servers]
        bench = Bench(twilio_url, twilio.pid)

        print("1. sustainable rate, status callbacks off")
        rates = bench.sustainable(servers, args.step_seconds)
        half = max(rates["adapter"] / 2, 50)
        print(f"2. at half the adapter's sustainable rate ({half:.0f}/s), callbacks off")
        at_half = {s.name: bench.step(s, half, args.seconds) for s in servers}
        print("3. at 200/s, status callbacks on")
        bench.set_callbacks(True)
        at_200: dict[str, Step] = {}
        callbacks: dict[str, str] = {}
        before = {server.name: callback_answers(twilio_url, server.port) for server in servers}
        for server in servers:
            at_200[server.name] = bench.step(server, 200, args.seconds)
        bench.set_callbacks(False)
        for server in servers:
            after = callback_answers(twilio_url, server.port)
            callbacks[server.name] = describe_callbacks(before[server.name], after)
        print("4. 1,000/s sustained, callbacks off")
        at_1000 = {s.name: bench.step(s, 1000, args.sustain_seconds) for s in servers}
        for phase, steps in (("2", at_half), ("3", at_200), ("4", at_1000)):
            for name, step in steps.items():
                print(f"  {phase}. {name:8} {step.line()}")
        for name, answers in callbacks.items():
            print(f"  3. {name:8} status callbacks: {answers}")

    compared = "compare" in names

    def row(label: str, cells: dict[str, str], ratio: str = "") -> None:
        line = f"{label:46}" + "".join(f"{cells[name]:>22}" for name in names)
        print(line + (f"{ratio:>18}" if compared else ""))

    def ratio(adapter: float, compare: float) -> str:
        return f"{adapter / compare:.2f}x" if compare else "-"

    print()
    titles = {"adapter": "adapter", "compare": "compare", "relay": "bare relay"}
    row("", titles, "adapter/compare")
    row(
        "sustainable rate (callbacks off)",
        {name: f"{rates[name]:.0f}/s" for name in names},
        ratio(rates["adapter"], rates.get("compare", 0)),
    )
    row(
        f"p50 / p99 at {half:.0f}/s (callbacks off)",
        {name: f"{at_half[name].p50:.1f} / {at_half[name].p99:.1f} ms" for name in names},
        ratio(at_half["adapter"].p99, at_half["compare"].p99) + " (p99)" if compared else "",
    )
    row(
        "p99 at 200/s, callbacks on (target <= 50)",
        {name: f"{at_200[name].p99:.1f} ms" for name in names},
        ratio(at_200["adapter"].p99, at_200["compare"].p99) if compared else "",
    )
    row(
        "CPU per answered text at 200/s, callbacks on",
        {name: f"{at_200[name].cpu_ms_per_text:.2f} ms" for name in names},
        ratio(at_200["adapter"].cpu_ms_per_text, at_200["compare"].cpu_ms_per_text)
        if compared
        else "",
    )
    row(
        f"1,000/s for {args.sustain_seconds:.0f} s, answered (kept up?)",
        {
            name: f"{at_1000[name].answered}/{at_1000[name].sent} ({at_1000[name].verdict})"
            for name in names
        },
        ratio(at_1000["adapter"].answered, at_1000["compare"].answered) if compared else "",
    )


if __name__ == "__main__":
    main()
