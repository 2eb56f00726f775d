"""Ingest benchmark: texts answered per second under wrk, against two baselines run in
the same run on the same machine.

    python benchmarks/ingest.py [--seconds 5] [--rounds 3] [--connections 32] [--callbacks]

Needs wrk (`apt-get install -y wrk`) and the `benchmarks` extra (Flask, gunicorn:
`pip install -e '.[benchmarks]'`). Processes, all on loopback:

- the adapter: `sms-adapter serve` with the echo bot (bots.echo), SQLite, every reply
  going to the emulated Twilio (rate limit raised so sends keep up);
- the emulated Twilio (benchmarks/recording_twilio.py: the built-in emulator counting each
  Send Message), status callbacks off unless --callbacks;
- a bare Starlette endpoint on the same server stack (benchmarks/baselines.py: reads the
  webhook, answers empty TwiML, stores and sends nothing);
- Twilio's Flask quickstart on gunicorn with 2 workers (benchmarks/flask_quickstart.py:
  answers every text with TwiML, stores nothing; Twilio would send that reply);
- wrk, 1 thread, 32 connections of signed webhooks, each with its own MessageSid.

A webhook's 200 is not an answer: the adapter's figure counts the Send Message requests
the emulated Twilio received while wrk ran. The baselines' figures count their 200s (for
the quickstart each 200 carries the reply). Rounds alternate between the three, medians are
compared, and the adapter's backlog drains before the next round, so all see the same load.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import (
    adapter_env,
    cpu_seconds,
    emulated_twilio,
    free_port,
    machine,
    process,
    rss_mb,
    sends_received,
    server_stack,
    set_callbacks,
    signed_form,
    sms_adapter,
    uvicorn_app,
)

HERE = Path(__file__).resolve().parent


@dataclass
class Wrk:
    requests: int  # responses received
    bad_status: int  # non-2xx responses
    socket_errors: int
    seconds: float


def run_wrk(url: str, requests_file: Path, first: int, args: argparse.Namespace, path: str) -> Wrk:
    command = [
        "wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds}s", "-s",
        str(HERE / "ingest.lua"), url, "--", str(requests_file), path, str(first), "1", "0",
    ]  # fmt: skip
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=args.seconds + 60
    ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+)", output)
    if not match:
        raise RuntimeError(f"wrk said: {output}")
    requests, micros, bad_status, socket_errors = map(int, match.groups())
    return Wrk(requests, bad_status, socket_errors, micros / 1e6)


def start_profiler(path: str, pid: int, seconds: int) -> subprocess.Popen[bytes]:
    formats = {".svg": "flamegraph", ".json": "speedscope", ".txt": "raw"}
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    command = [
        py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
        "--format", formats.get(Path(path).suffix, "flamegraph"), "--output", path,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def drain(twilio_url: str, expected: int, timeout: float = 120) -> float:
    """Wait until the emulated Twilio has every reply expected so far (or no more arrive
    for 3 s); return how long that took."""
    start = time.monotonic()
    last, last_change = -1, start
    while time.monotonic() - start < timeout:
        count = sends_received(twilio_url)
        if count >= expected:
            break
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > 3:
            break
        time.sleep(0.2)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--callbacks", action="store_true", help="the emulated Twilio posts status callbacks"
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the adapter with py-spy during its first wrk run (pip install py-spy):"
        " FILE.svg a flame graph, FILE.json speedscope, FILE.txt collapsed stacks",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        sys.exit("gunicorn and Flask are needed: pip install -e '.[benchmarks]'")

    print(f"machine: {machine()}; server stack: {server_stack()}", flush=True)
    adapter_port, twilio_port, bare_port, flask_port = (free_port() for _ in range(4))
    adapter_base = f"http://127.0.0.1:{adapter_port}"
    texts_per_round = 20_000 * args.seconds  # more than any round answers: no MessageSid reused
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch:
        requests_file = Path(scratch) / "requests.tsv"
        with requests_file.open("w") as out:
            for i in range(texts_per_round * args.rounds):
                body, signature = signed_form(
                    f"{adapter_base}/api/sms", i, f"+1555{i % 5000:07d}", f"text {i}"
                )
                out.write(f"{signature}\t{body}\n")
        twilio_url = f"http://127.0.0.1:{twilio_port}"
        env = adapter_env(
            str(Path(scratch) / "ingest.sqlite3"), adapter_base, twilio_url, "bots.echo:router"
        )
        gunicorn = [
            str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b",
            f"127.0.0.1:{flask_port}", "--log-level", "warning", "benchmarks.flask_quickstart:app",
        ]  # fmt: skip
        with (
            emulated_twilio(twilio_port, env) as twilio,
            process(
                sms_adapter("serve", "--port", str(adapter_port)), env, f"{adapter_base}/readyz"
            ) as adapter,
            process(
                uvicorn_app("benchmarks.baselines:app", bare_port),
                env,
                f"http://127.0.0.1:{bare_port}/readyz",
            ),
            process(gunicorn, env, f"http://127.0.0.1:{flask_port}/sms"),
        ):
            set_callbacks(twilio_url, args.callbacks)
            bare_rates: list[float] = []
            flask_rates: list[float] = []
            answered_rates: list[float] = []
            accepted_rates: list[float] = []
            cpu_per_text: list[float] = []
            twilio_busy: list[float] = []  # the emulated Twilio's CPU, in cores
            accepted_total, errors, rss_peak = 0, 0, 0.0
            for round_no in range(args.rounds):
                bare = run_wrk(
                    f"http://127.0.0.1:{bare_port}/bare", requests_file, 1, args, "/bare"
                )
                bare_rates.append((bare.requests - bare.bad_status) / bare.seconds)
                flask = run_wrk(
                    f"http://127.0.0.1:{flask_port}/sms", requests_file, 1, args, "/sms"
                )
                flask_rates.append((flask.requests - flask.bad_status) / flask.seconds)

                profiler = None
                if args.profile and round_no == 0:
                    profiler = start_profiler(args.profile, adapter.pid, args.seconds)
                sent_before, cpu_before = sends_received(twilio_url), cpu_seconds(adapter.pid)
                twilio_cpu_before = cpu_seconds(twilio.pid)
                run = run_wrk(
                    f"{adapter_base}/api/sms",
                    requests_file,
                    1 + round_no * texts_per_round,
                    args,
                    "/api/sms",
                )
                sent_after, cpu_after = sends_received(twilio_url), cpu_seconds(adapter.pid)
                twilio_busy.append((cpu_seconds(twilio.pid) - twilio_cpu_before) / run.seconds)
                rss_peak = max(rss_peak, rss_mb(adapter.pid))
                if profiler is not None:
                    profiler.wait(timeout=60)
                answered = sent_after - sent_before
                answered_rates.append(answered / run.seconds)
                accepted_rates.append((run.requests - run.bad_status) / run.seconds)
                cpu_per_text.append((cpu_after - cpu_before) / max(answered, 1) * 1000)
                accepted_total += run.requests - run.bad_status
                errors += bare.bad_status + flask.bad_status + run.bad_status + run.socket_errors
                drained = drain(twilio_url, accepted_total)
                print(
                    f"round {round_no + 1}: bare {bare_rates[-1]:6.0f}/s  flask {flask_rates[-1]:6.0f}/s"
                    f"  adapter answered {answered_rates[-1]:6.0f}/s (webhooks accepted "
                    f"{accepted_rates[-1]:.0f}/s; backlog drained in {drained:.1f} s)",
                    flush=True,
                )
            replies = sends_received(twilio_url)

    bare_rate, flask_rate = statistics.median(bare_rates), statistics.median(flask_rates)
    answered_rate = statistics.median(answered_rates)
    print()
    print(f"medians of {args.rounds} rounds of {args.seconds} s, wrk -c{args.connections}:")
    print(f"  bare Starlette endpoint (empty TwiML)     : {bare_rate:7.0f} req/s")
    print(f"  Flask quickstart, gunicorn -w 2 (TwiML)   : {flask_rate:7.0f} answered/s")
    print(
        f"  adapter, echo bot, replies sent to Twilio : {answered_rate:7.0f} answered/s"
        f"   (webhooks accepted {statistics.median(accepted_rates):.0f}/s)"
    )
    print(f"  adapter / bare      : {answered_rate / bare_rate:6.2f}x   (target >= 0.5x)")
    print(f"  adapter / quickstart: {answered_rate / flask_rate:6.2f}x   (target >= 3x)")
    print(
        f"  adapter CPU per answered text: {statistics.median(cpu_per_text):.2f} ms"
        f" (user+sys; status callbacks {'on' if args.callbacks else 'off'}); peak RSS {rss_peak:.0f} MB"
    )
    print(
        f"  emulated Twilio CPU while the adapter ran: {statistics.median(twilio_busy):.2f} cores"
        " (near 1.0: Twilio, not the adapter, is the limit)"
    )
    print(
        f"  non-2xx or socket errors: {errors}; replies received in all: {replies} for"
        f" {accepted_total} webhooks wrk saw accepted (+ up to {args.connections} in flight"
        " when each wrk run stopped)"
    )


if __name__ == "__main__":
    main()
