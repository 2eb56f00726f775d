"""Ingest benchmark: texts answered per second under wrk, against two baselines run in
the same run on the same machine.

    python benchmarks/ingest.py [--seconds 5] [--rounds 3] [--connections 32] [--callbacks]
        [--twilio lean|emulator] [--adapter-root PATH] [--compare-root PATH]

Needs wrk (`apt-get install -y wrk`) and the `benchmarks` extra (Flask, gunicorn:
`pip install -e '.[benchmarks]'`). Processes, all on loopback:

- the adapter: `sms-adapter serve` with the echo bot (bots.echo), SQLite, every reply
  going to the emulated Twilio (rate limit raised so sends keep up), run from this
  checkout or from --adapter-root (same venv);
- with --compare-root, a second adapter run from that checkout (e.g. the commit before a
  change), measured in the same rounds, the two taking turns at going first;
- the emulated Twilio counting each Send Message: benchmarks/lean_twilio.py (--twilio
  lean, the default: cheap enough not to be the limit) or the built-in emulator
  (benchmarks/recording_twilio.py, --twilio emulator); status callbacks off unless
  --callbacks;
- a bare Starlette endpoint on the same server stack (benchmarks/baselines.py: reads the
  webhook, answers empty TwiML, stores and sends nothing);
- Twilio's Flask quickstart on gunicorn with 2 workers (benchmarks/flask_quickstart.py:
  answers every text with TwiML, stores nothing; Twilio would send that reply);
- wrk, 1 thread, 32 connections of signed webhooks, each with its own MessageSid.

A webhook's 200 is not an answer: the adapter's figure counts the Send Message requests
the emulated Twilio received while wrk ran. The baselines' figures count their 200s (for
the quickstart each 200 carries the reply). Rounds alternate between them, medians are
compared, and each adapter's backlog drains before the next run, so all see the same load.
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import (
    adapter_env,
    add_setup_options,
    await_callbacks,
    bench_env,
    callback_answers,
    cpu_seconds,
    emulated_twilio,
    free_port,
    machine,
    process,
    rss_mb,
    sends_received,
    server_stack,
    set_callbacks,
    setup_lines,
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
            print(f"  (warning: replies stopped at {count} of {expected}; not drained)")
            break
        time.sleep(0.2)
    return time.monotonic() - start


@dataclass
class Adapter:
    """One adapter under test: the checkout it runs from, and its figures round by round."""

    name: str
    root: Path
    port: int
    requests_file: Path
    pid: int = 0
    answered: list[float] = field(default_factory=list)  # replies Twilio received, per s
    accepted: list[float] = field(default_factory=list)  # webhooks answered 2xx, per s
    cpu_per_text: list[float] = field(default_factory=list)  # ms, while wrk ran
    # ms, over the round and its backlog: until every text accepted is answered (and its
    # status callbacks handled), divided by all of them
    cpu_per_text_drained: list[float] = field(default_factory=list)
    twilio_busy: list[float] = field(default_factory=list)  # the emulated Twilio, in cores
    rss_peak: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def write_requests(path: Path, base: str, count: int) -> None:
    """`count` signed webhooks for the adapter at `base`, one "signature<TAB>body" a line."""
    with path.open("w") as out:
        for i in range(count):
            body, signature = signed_form(f"{base}/api/sms", i, f"+1555{i % 5000:07d}", f"text {i}")
            out.write(f"{signature}\t{body}\n")


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
    add_setup_options(parser, "in the same rounds (the order alternating)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    if shutil.which("gunicorn", path=str(Path(sys.executable).parent)) is None:
        sys.exit("gunicorn and Flask are needed: pip install -e '.[benchmarks]'")

    print(f"machine: {machine()}; server stack: {server_stack()}", flush=True)
    for line in setup_lines(args):
        print(line, flush=True)
    twilio_port, bare_port, flask_port = free_port(), free_port(), free_port()
    twilio_url = f"http://127.0.0.1:{twilio_port}"
    texts_per_round = 20_000 * args.seconds  # more than any round answers: no MessageSid reused
    roots = [("adapter", args.adapter_root)]
    if args.compare_root is not None:
        roots.append(("compare", args.compare_root))
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch, ExitStack() as running:
        adapters = [
            Adapter(name, root, free_port(), Path(scratch) / f"{name}-requests.tsv")
            for name, root in roots
        ]
        for adapter in adapters:
            write_requests(adapter.requests_file, adapter.base, texts_per_round * args.rounds)
        # The emulated Twilio and the baselines: this checkout's benchmarks.
        env = bench_env(
            adapter_env(
                str(Path(scratch) / "unused.sqlite3"),
                f"http://127.0.0.1:{bare_port}",
                twilio_url,
                "bots.echo:router",
            )
        )
        twilio = running.enter_context(emulated_twilio(twilio_port, env, args.twilio))
        for adapter in adapters:
            adapter_process = running.enter_context(
                process(
                    sms_adapter("serve", "--port", str(adapter.port)),
                    adapter_env(
                        str(Path(scratch) / f"{adapter.name}.sqlite3"),
                        adapter.base,
                        twilio_url,
                        "bots.echo:router",
                        adapter.root,
                    ),
                    f"{adapter.base}/readyz",
                    cwd=adapter.root,
                )
            )
            adapter.pid = adapter_process.pid
        running.enter_context(
            process(
                uvicorn_app("benchmarks.baselines:app", bare_port),
                env,
                f"http://127.0.0.1:{bare_port}/readyz",
            )
        )
        gunicorn = [
            str(Path(sys.executable).parent / "gunicorn"), "-w", "2", "-b",
            f"127.0.0.1:{flask_port}", "--log-level", "warning", "benchmarks.flask_quickstart:app",
        ]  # fmt: skip
        running.enter_context(process(gunicorn, env, f"http://127.0.0.1:{flask_port}/sms"))

        set_callbacks(twilio_url, args.callbacks)
        bare_rates: list[float] = []
        flask_rates: list[float] = []
        accepted_total, errors = 0, 0
        for round_no in range(args.rounds):
            bare = run_wrk(
                f"http://127.0.0.1:{bare_port}/bare", adapters[0].requests_file, 1, args, "/bare"
            )
            bare_rates.append((bare.requests - bare.bad_status) / bare.seconds)
            flask = run_wrk(
                f"http://127.0.0.1:{flask_port}/sms", adapters[0].requests_file, 1, args, "/sms"
            )
            flask_rates.append((flask.requests - flask.bad_status) / flask.seconds)
            errors += bare.bad_status + flask.bad_status
            report = f"round {round_no + 1}: bare {bare_rates[-1]:6.0f}/s  flask {flask_rates[-1]:6.0f}/s"
            # Alternate which adapter goes first, so neither always runs on a warmer machine.
            for adapter in adapters if round_no % 2 == 0 else adapters[::-1]:
                profiler = None
                if args.profile and round_no == 0 and adapter is adapters[0]:
                    profiler = start_profiler(args.profile, adapter.pid, args.seconds)
                sent_before, cpu_before = sends_received(twilio_url), cpu_seconds(adapter.pid)
                twilio_cpu_before = cpu_seconds(twilio.pid)
                callbacks_before = callback_answers(twilio_url, adapter.port)
                run = run_wrk(
                    f"{adapter.base}/api/sms",
                    adapter.requests_file,
                    1 + round_no * texts_per_round,
                    args,
                    "/api/sms",
                )
                sent_after, cpu_after = sends_received(twilio_url), cpu_seconds(adapter.pid)
                adapter.twilio_busy.append(
                    (cpu_seconds(twilio.pid) - twilio_cpu_before) / run.seconds
                )
                adapter.rss_peak = max(adapter.rss_peak, rss_mb(adapter.pid))
                if profiler is not None:
                    profiler.wait(timeout=60)
                answered = sent_after - sent_before
                adapter.answered.append(answered / run.seconds)
                adapter.accepted.append((run.requests - run.bad_status) / run.seconds)
                adapter.cpu_per_text.append((cpu_after - cpu_before) / max(answered, 1) * 1000)
                accepted_total += run.requests - run.bad_status
                errors += run.bad_status + run.socket_errors
                drained = drain(twilio_url, accepted_total)
                all_answered = sends_received(twilio_url) - sent_before
                if args.callbacks:
                    await_callbacks(twilio_url, adapter.port, callbacks_before, 3 * all_answered)
                adapter.cpu_per_text_drained.append(
                    (cpu_seconds(adapter.pid) - cpu_before) / max(all_answered, 1) * 1000
                )
                report += (
                    f"  {adapter.name} answered {adapter.answered[-1]:6.0f}/s (webhooks accepted"
                    f" {adapter.accepted[-1]:.0f}/s; backlog drained in {drained:.1f} s)"
                )
            print(report, flush=True)
        replies = sends_received(twilio_url)

    bare_rate, flask_rate = statistics.median(bare_rates), statistics.median(flask_rates)
    rates = {adapter.name: statistics.median(adapter.answered) for adapter in adapters}
    print()
    print(f"medians of {args.rounds} rounds of {args.seconds} s, wrk -c{args.connections}:")
    print(f"  bare Starlette endpoint (empty TwiML)     : {bare_rate:7.0f} req/s")
    print(f"  Flask quickstart, gunicorn -w 2 (TwiML)   : {flask_rate:7.0f} answered/s")
    for adapter in adapters:
        print(
            f"  {adapter.name + ', echo bot, replies sent to Twilio':42}:"
            f" {rates[adapter.name]:7.0f} answered/s"
            f"   (webhooks accepted {statistics.median(adapter.accepted):.0f}/s)"
        )
    answered_rate = rates["adapter"]
    if "compare" in rates:
        print(f"  adapter / compare   : {answered_rate / max(rates['compare'], 1e-9):6.2f}x")
    print(f"  adapter / bare      : {answered_rate / bare_rate:6.2f}x   (target >= 0.5x)")
    print(f"  adapter / quickstart: {answered_rate / flask_rate:6.2f}x   (target >= 3x)")
    for adapter in adapters:
        print(
            f"  {adapter.name} CPU per answered text: {statistics.median(adapter.cpu_per_text):.2f} ms"
            " while wrk ran,"
            f" {statistics.median(adapter.cpu_per_text_drained):.2f} ms over each round and its"
            f" backlog (user+sys; status callbacks {'on' if args.callbacks else 'off'});"
            f" peak RSS {adapter.rss_peak:.0f} MB"
        )
    if "compare" in rates:
        medians = {
            "while wrk ran": [statistics.median(a.cpu_per_text) for a in adapters],
            "with the backlog": [statistics.median(a.cpu_per_text_drained) for a in adapters],
        }
        for label, (adapter_cpu, compare_cpu) in medians.items():
            print(
                f"  adapter / compare CPU per answered text, {label}:"
                f" {adapter_cpu / compare_cpu:6.2f}x"
            )
    for adapter in adapters:
        print(
            f"  emulated Twilio CPU while {adapter.name} ran: "
            f"{statistics.median(adapter.twilio_busy):.2f} cores"
            " (near 1.0: Twilio, not the adapter, is the limit)"
        )
    print(
        f"  non-2xx or socket errors: {errors}; replies received in all: {replies} for"
        f" {accepted_total} webhooks wrk saw accepted (+ up to {args.connections} in flight"
        " when each wrk run stopped)"
    )


if __name__ == "__main__":
    main()
