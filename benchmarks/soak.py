"""Memory soak: the adapter's resident memory (RSS) under a steady load of answered texts.

    python benchmarks/soak.py [--minutes 10] [--rate 200] [--no-callbacks]
        [--twilio lean|emulator] [--adapter-root PATH] [--compare-root PATH]

The adapter (`sms-adapter serve`, the echo bot, SQLite; from this checkout or from
--adapter-root, same venv) answers texts sent at a steady rate (default 200/s) by signed
webhooks; the emulated Twilio (benchmarks/lean_twilio.py, or the built-in emulator with
--twilio emulator) takes the replies in another process and posts status callbacks (3 per
reply) unless --no-callbacks. With --compare-root, the adapter from that checkout then
soaks for as long again, after the first (so the run takes twice --minutes), and the two
are printed one after the other with their ratios. RSS is read from /proc/<pid>/status every 5 s. Printed: the RSS just
before the load starts (the baseline), at the first sample under load, its peak, at the
end, and the slope (least squares over the second half of the run, MB per minute; flat is
~0), with texts answered and CPU per answered text over the whole run (callbacks included).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import echo_webhooks, offer
from benchmarks.support import (
    adapter_env,
    add_setup_options,
    await_callbacks,
    bench_env,
    callback_answers,
    cpu_seconds,
    describe_callbacks,
    emulated_twilio,
    free_port,
    machine,
    process,
    rss_mb,
    sends_received,
    set_callbacks,
    setup_lines,
    sms_adapter,
)

SAMPLE_SECONDS = 5.0
CHUNK_SECONDS = 10  # webhooks are built and sent 10 s at a time, to bound this script's memory


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    spread = sum((t - mean_t) ** 2 for t, _ in samples)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (m - mean_m) for t, m in samples) / spread * 60


@dataclass
class Soak:
    """One adapter's run: what it was sent and answered, and its RSS along the way."""

    name: str
    sent: int
    failures: int
    answered: int
    idle_rss: float
    samples: list[tuple[float, float]]  # (seconds since the load started, MB)
    cpu_ms_per_text: float
    callbacks: str

    @property
    def elapsed(self) -> float:
        return self.samples[-1][0] if self.samples else 0.0

    @property
    def peak(self) -> float:
        return max((m for _, m in self.samples), default=0.0)

    @property
    def slope(self) -> float:
        """MB per minute over the second half of the run."""
        return slope_per_minute([s for s in self.samples if s[0] >= self.elapsed / 2])


def soak(name: str, root: Path, args: argparse.Namespace, twilio_url: str, scratch: str) -> Soak:
    """Run the adapter from `root` under the steady load for --minutes."""
    adapter_port = free_port()
    adapter_url = f"http://127.0.0.1:{adapter_port}"
    env = adapter_env(
        str(Path(scratch) / f"{name}.sqlite3"), adapter_url, twilio_url, "bots.echo:router", root
    )
    with process(
        sms_adapter("serve", "--port", str(adapter_port)),
        env,
        f"{adapter_url}/readyz",
        cwd=root,
    ) as adapter:
        set_callbacks(twilio_url, not args.no_callbacks)
        idle_rss, cpu_before = rss_mb(adapter.pid), cpu_seconds(adapter.pid)
        sent_before = sends_received(twilio_url)
        callbacks_before = callback_answers(twilio_url, adapter_port)
        samples: list[tuple[float, float]] = []
        start = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(SAMPLE_SECONDS):
                samples.append((time.monotonic() - start, rss_mb(adapter.pid)))
                if len(samples) % 12 == 0:
                    print(
                        f"  {name} {samples[-1][0] / 60:5.1f} min: RSS {samples[-1][1]:.1f} MB",
                        flush=True,
                    )

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sent, failures = 0, 0
        while time.monotonic() - start < args.minutes * 60:
            webhooks = echo_webhooks(
                adapter_port, "/api/sms", f"soak-{name}-", args.rate * CHUNK_SECONDS, first=sent
            )
            result = asyncio.run(offer(adapter_port, webhooks, args.rate))
            sent += len(webhooks)
            failures += result.failures
        stop.set()
        sampler.join()
        deadline = time.monotonic() + 60
        while (
            sends_received(twilio_url) - sent_before < sent - failures
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        answered = sends_received(twilio_url) - sent_before
        if not args.no_callbacks:
            await_callbacks(twilio_url, adapter_port, callbacks_before, 3 * answered)
        cpu = cpu_seconds(adapter.pid) - cpu_before
        callbacks = describe_callbacks(callbacks_before, callback_answers(twilio_url, adapter_port))
        set_callbacks(twilio_url, False)
    return Soak(
        name, sent, failures, answered, idle_rss, samples, cpu / max(answered, 1) * 1000, callbacks
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=200, help="texts per second")
    parser.add_argument("--no-callbacks", action="store_true")
    add_setup_options(parser, "for --minutes more once the first has finished")
    args = parser.parse_args()

    print(f"machine: {machine()}", flush=True)
    for line in setup_lines(args):
        print(line, flush=True)
    roots = [("adapter", args.adapter_root)]
    if args.compare_root is not None:
        roots.append(("compare", args.compare_root))
    twilio_port = free_port()
    twilio_url = f"http://127.0.0.1:{twilio_port}"
    with tempfile.TemporaryDirectory(prefix="soak-bench-") as scratch:
        env = bench_env(
            adapter_env(str(Path(scratch) / "unused.sqlite3"), "", twilio_url, "bots.echo:router")
        )
        with emulated_twilio(twilio_port, env, args.twilio):
            runs = [soak(name, root, args, twilio_url, scratch) for name, root in roots]

    for run in runs:
        print()
        print(
            f"{run.name}: {run.sent} texts sent at {args.rate}/s over {run.elapsed / 60:.1f} min"
            f" (webhook failures {run.failures}); {run.answered} answered; status callbacks"
            f" {'off' if args.no_callbacks else 'on'} ({run.callbacks})"
        )
        if run.samples:
            print(
                f"{run.name} RSS: idle before load {run.idle_rss:.1f} MB, first sample"
                f" {run.samples[0][1]:.1f} MB, peak {run.peak:.1f} MB, end {run.samples[-1][1]:.1f} MB"
                "   (target <= 150 MB)"
            )
            print(
                f"{run.name} RSS slope over the second half: {run.slope:+.2f} MB/min"
                "   (target: flat)"
            )
        print(f"{run.name} CPU per answered text: {run.cpu_ms_per_text:.2f} ms (user+sys)")
    if len(runs) == 2 and all(run.samples for run in runs):
        adapter, compare = runs
        print()
        print(
            f"adapter / compare: peak RSS {adapter.peak / compare.peak:.2f}x, end RSS"
            f" {adapter.samples[-1][1] / compare.samples[-1][1]:.2f}x, CPU per answered text"
            f" {adapter.cpu_ms_per_text / max(compare.cpu_ms_per_text, 1e-9):.2f}x"
        )


if __name__ == "__main__":
    main()
