"""Memory soak: the adapter's resident memory (RSS) under a steady load of answered texts.

    python benchmarks/soak.py [--minutes 10] [--rate 200] [--no-callbacks]

The adapter (`sms-adapter serve`, the echo bot, SQLite) answers texts sent at a steady
rate (default 200/s) by signed webhooks; the emulated Twilio (benchmarks/recording_twilio.py)
takes the replies in another process and posts status callbacks (3 per reply) unless
--no-callbacks. RSS is read from /proc/<pid>/status every 5 s. Printed: the RSS just
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import echo_webhooks, offer
from benchmarks.support import (
    adapter_env,
    cpu_seconds,
    emulated_twilio,
    free_port,
    machine,
    process,
    rss_mb,
    sends_received,
    set_callbacks,
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=200, help="texts per second")
    parser.add_argument("--no-callbacks", action="store_true")
    args = parser.parse_args()

    print(f"machine: {machine()}", flush=True)
    twilio_port, adapter_port = free_port(), free_port()
    twilio_url, adapter_url = f"http://127.0.0.1:{twilio_port}", f"http://127.0.0.1:{adapter_port}"
    with tempfile.TemporaryDirectory(prefix="soak-bench-") as scratch:
        env = adapter_env(
            str(Path(scratch) / "soak.sqlite3"), adapter_url, twilio_url, "bots.echo:router"
        )
        with (
            emulated_twilio(twilio_port, env),
            process(
                sms_adapter("serve", "--port", str(adapter_port)), env, f"{adapter_url}/readyz"
            ) as adapter,
        ):
            set_callbacks(twilio_url, not args.no_callbacks)
            idle_rss, cpu_before = rss_mb(adapter.pid), cpu_seconds(adapter.pid)
            samples: list[tuple[float, float]] = []
            start = time.monotonic()
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(SAMPLE_SECONDS):
                    samples.append((time.monotonic() - start, rss_mb(adapter.pid)))
                    if len(samples) % 12 == 0:
                        print(
                            f"  {samples[-1][0] / 60:5.1f} min: RSS {samples[-1][1]:.1f} MB",
                            flush=True,
                        )

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            sent, failures, chunk = 0, 0, 0
            while time.monotonic() - start < args.minutes * 60:
                webhooks = echo_webhooks(
                    adapter_port, "/api/sms", "soak-", args.rate * CHUNK_SECONDS, first=sent
                )
                result = asyncio.run(offer(adapter_port, webhooks, args.rate))
                sent += len(webhooks)
                failures += result.failures
                chunk += 1
            stop.set()
            sampler.join()
            deadline = time.monotonic() + 60
            while sends_received(twilio_url) < sent - failures and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1)  # the last status callbacks
            answered = sends_received(twilio_url)
            cpu = cpu_seconds(adapter.pid) - cpu_before

    elapsed = samples[-1][0] if samples else 0.0
    second_half = [s for s in samples if s[0] >= elapsed / 2]
    print()
    print(
        f"{sent} texts sent at {args.rate}/s over {elapsed / 60:.1f} min (webhook failures {failures});"
        f" {answered} answered; status callbacks {'off' if args.no_callbacks else 'on'}"
    )
    if samples:
        print(
            f"adapter RSS: idle before load {idle_rss:.1f} MB, first sample {samples[0][1]:.1f} MB,"
            f" peak {max(m for _, m in samples):.1f} MB, end {samples[-1][1]:.1f} MB"
            "   (target <= 150 MB)"
        )
        print(
            f"slope over the second half: {slope_per_minute(second_half):+.2f} MB/min"
            "   (target: flat)"
        )
    print(f"adapter CPU per answered text: {cpu / max(answered, 1) * 1000:.2f} ms (user+sys)")


if __name__ == "__main__":
    main()
