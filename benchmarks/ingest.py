"""Ingest benchmark: signed webhooks accepted and committed per second, as a ratio of a
bare Starlette endpoint on the same server answering the same TwiML.

    python benchmarks/ingest.py [--seconds 5] [--rounds 3] [--connections 32]

Needs wrk (`apt-get install wrk`). The server is one uvicorn process (the adapter with a
bot that sends nothing, SQLite with synchronous=FULL); wrk runs in another process on
loopback. Bare and adapter rounds alternate, and medians are compared, so both see the same
machine load. Every adapter request carries its own MessageSid and a valid signature; its
200 means the text is committed to the store.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.support import adapter_env, free_port, process, signed_form

HERE = Path(__file__).resolve().parent


def run_wrk(
    base: str, path: str, requests_file: Path, first: int, args: argparse.Namespace
) -> tuple[float, int]:
    command = [
        "wrk",
        "-t1",
        f"-c{args.connections}",
        f"-d{args.seconds}s",
        "--latency",
        "-s",
        str(HERE / "ingest.lua"),
        base + path,
        "--",
        str(requests_file),
        path,
        str(first),
        "1",
        "0",
    ]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=args.seconds + 60
    ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+)", output)
    if not match:
        raise RuntimeError(f"wrk said: {output}")
    requests, micros, bad_status, socket_errors = map(int, match.groups())
    return requests / (micros / 1e6), bad_status + socket_errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--texts-per-round", type=int, default=30_000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as scratch:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/api/sms"
        requests_file = Path(scratch) / "requests.tsv"
        total = args.texts_per_round * args.rounds
        with requests_file.open("w") as out:
            for i in range(total):
                body, signature = signed_form(url, i, f"+1555{i % 5000:07d}", f"text {i}")
                out.write(f"{signature}\t{body}\n")

        env = adapter_env(
            str(Path(scratch) / "ingest.sqlite3"),
            base,
            "http://127.0.0.1:9",
            "benchmarks.quiet_bot:router",
        )
        server = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "benchmarks.ingest_app:build",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        with process(server, env, f"{base}/readyz"):
            bare_rates, adapter_rates, errors = [], [], 0
            for round_no in range(args.rounds):
                rate, bad = run_wrk(base, "/bare", requests_file, 1, args)
                bare_rates.append(rate)
                errors += bad
                rate, bad = run_wrk(
                    base, "/api/sms", requests_file, 1 + round_no * args.texts_per_round, args
                )
                adapter_rates.append(rate)
                errors += bad
                print(
                    f"round {round_no + 1}: bare {bare_rates[-1]:8.0f} req/s   adapter {adapter_rates[-1]:8.0f} req/s",
                    flush=True,
                )
            backlog = httpx.get(f"{base}/readyz").status_code
        bare, adapter = statistics.median(bare_rates), statistics.median(adapter_rates)
        print()
        print(f"bare Starlette endpoint : {bare:8.0f} req/s (median of {args.rounds})")
        print(f"adapter /api/sms        : {adapter:8.0f} req/s (signed, committed to SQLite)")
        print(f"ratio                   : {adapter / bare:8.1%}   (target >= 50%)")
        print(f"non-2xx or socket errors: {errors}   (readyz at the end: {backlog})")


if __name__ == "__main__":
    main()
