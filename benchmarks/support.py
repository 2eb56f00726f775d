"""Shared pieces of the benchmark scripts: processes on loopback, signed webhook forms."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
from twilio.request_validator import RequestValidator

from adapter.cli.server import default_event_loop, default_parser
from adapter.cli.server import server_stack as serve_stack

ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "benchmark-token"
OUR_NUMBER = "+15005550006"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def adapter_env(
    database: str, public_url: str, twilio_base_url: str, bots: str, root: Path = ROOT
) -> dict[str, str]:
    """The environment of an adapter run from the checkout at `root` (its `adapter` and
    `bots` packages come first on the path, ahead of the venv's editable install); the
    benchmark's own processes (Twilio, baselines) take it too, with `bench_env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env.update(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "SMS_ADAPTER_DATABASE": database,
            "SMS_ADAPTER_PUBLIC_URL": public_url,
            "SMS_ADAPTER_TWILIO_BASE_URL": twilio_base_url,
            "SMS_ADAPTER_BOTS": bots,
            "SMS_ADAPTER_LOG_LEVEL": "warning",
            "SMS_ADAPTER_RATE_LIMIT": "1000000/1s",
            "SMS_ADAPTER_MAX_CONCURRENCY": "64",
            "PYTHONPATH": str(root),
        }
    )
    return env


def bench_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process of this checkout's benchmarks (the emulated Twilio, baselines)."""
    return {**env, "PYTHONPATH": str(ROOT)}


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str], ready_url: str, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` in `cwd` until the block ends, once `ready_url` answers 200. Its stderr
    goes to a file (a pipe nobody reads would stall it once full), shown if it exits."""
    stderr = tempfile.TemporaryFile()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                stderr.seek(0)
                raise RuntimeError(f"{args[2:]} exited: {stderr.read().decode(errors='replace')}")
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{ready_url} never became ready")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()


def sms_adapter(*args: str) -> list[str]:
    return [sys.executable, "-m", "adapter.cli", *args]


def signed_form(url: str, index: int, person: str, body: str) -> tuple[str, str]:
    """The urlencoded body of a Twilio messaging webhook and its X-Twilio-Signature."""
    sid = f"SM{index:032x}"
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": person,
        "To": OUR_NUMBER,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }
    return urlencode(form), RequestValidator(AUTH_TOKEN).compute_signature(url, form)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine() -> str:
    """The machine the figures come from: cores, CPU model, load average now."""
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f"{os.cpu_count()} cores, {model}, load average {load}"


def server_stack() -> str:
    """What `sms-adapter serve` runs on here: "uvicorn on uvloop + httptools" when both
    can be imported (adapter/cli/server.py chooses), else asyncio and/or h11."""
    return serve_stack()


def uvicorn_app(app: str, port: int) -> list[str]:
    """A uvicorn process for a baseline app, on the loop and parser `sms-adapter serve`
    runs on (without its connection guard)."""
    return [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--loop", default_event_loop(), "--http", default_parser(),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


TWILIOS = {
    "lean": "lean (benchmarks/lean_twilio.py: Send Message and callbacks only, raw asyncio)",
    "emulator": "the built-in emulator (benchmarks/recording_twilio.py, Starlette)",
}


@contextlib.contextmanager
def emulated_twilio(
    port: int, env: dict[str, str], kind: str = "lean"
) -> Iterator[subprocess.Popen[bytes]]:
    """The emulated Twilio in its own process, noting every Send Message, at
    http://127.0.0.1:<port>: `lean` (benchmarks/lean_twilio.py) or `emulator` (the
    built-in one, benchmarks/recording_twilio.py). Status callbacks start off."""
    url = f"http://127.0.0.1:{port}"
    if kind == "lean":
        args = [sys.executable, "-m", "benchmarks.lean_twilio", "--port", str(port)]
    elif kind == "emulator":
        args = [*uvicorn_app("benchmarks.recording_twilio:build", port), "--factory"]
    else:
        raise ValueError(f"unknown emulated Twilio {kind!r}: one of {', '.join(TWILIOS)}")
    env = {**bench_env(env), "BENCH_STATUS_CALLBACKS": "0"}
    with process(args, env, f"{url}/_bench/count") as twilio:
        yield twilio


def adapter_root(value: str) -> Path:
    """An argparse type: a checkout of the adapter to run `sms-adapter serve` from."""
    root = Path(value).expanduser().resolve()
    if not (root / "adapter" / "cli").is_dir() or not (root / "bots").is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a checkout of the adapter")
    return root


def describe_root(root: Path) -> str:
    """`root` and the commit it has checked out ("+ changes" when its tree differs)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %s"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return str(root)
    short, _, subject = commit.partition(" ")
    subject = subject if len(subject) <= 60 else subject[:59] + "…"
    return f"{root} at {short}{' + changes' if changed else ''} ({subject})"


def add_setup_options(parser: argparse.ArgumentParser, compare: str) -> None:
    """--twilio, --adapter-root and --compare-root, the same in every script."""
    parser.add_argument(
        "--twilio",
        choices=sorted(TWILIOS),
        default="lean",
        help="the emulated Twilio taking the replies: lean (default; cheap enough that"
        " the adapter, not Twilio, is measured) or emulator (the built-in one)",
    )
    parser.add_argument(
        "--adapter-root",
        type=adapter_root,
        default=ROOT,
        metavar="PATH",
        help="run the adapter (`python -m adapter.cli serve`) from this checkout, with this"
        " venv (default: the checkout these scripts are in)",
    )
    parser.add_argument(
        "--compare-root",
        type=adapter_root,
        metavar="PATH",
        help=f"also run the adapter from this checkout (e.g. the commit before a change), {compare},"
        " and print both figures side by side with their ratio",
    )


def setup_lines(args: argparse.Namespace) -> list[str]:
    """The header lines naming what runs: the emulated Twilio and the adapter checkouts."""
    lines = [
        f"emulated Twilio: {TWILIOS[args.twilio]}",
        f"adapter: {describe_root(args.adapter_root)}",
    ]
    if args.compare_root is not None:
        lines.append(f"compare: {describe_root(args.compare_root)}")
    return lines


def sends_received(twilio_url: str) -> int:
    return int(httpx.get(f"{twilio_url}/_bench/count", timeout=30).json())


def arrivals(twilio_url: str, prefix: str) -> dict[str, float]:
    """{reply body: when its Send Message arrived} for bodies starting with `prefix`."""
    response = httpx.get(f"{twilio_url}/_bench/arrivals", params={"prefix": prefix}, timeout=60)
    return dict(response.json())


def set_callbacks(twilio_url: str, on: bool) -> None:
    httpx.post(f"{twilio_url}/_bench/callbacks", params={"on": "1" if on else "0"}, timeout=10)


def callback_answers(twilio_url: str, port: int) -> dict[str, int] | None:
    """The status callbacks posted so far to the server on `port`, by how it answered
    ({"HTTP 200": n, "failed to post": m}), if the emulated Twilio keeps count (the lean
    one does, the built-in emulator does not)."""
    response = httpx.get(f"{twilio_url}/_bench/callbacks", timeout=10)
    if response.status_code != 200:
        return None
    tally = response.json()
    counts = {"failed to post": 0}
    for url, answers in tally["answered"].items():
        if urlsplit(url).port == port:
            for status, n in answers.items():
                counts[f"HTTP {status}"] = counts.get(f"HTTP {status}", 0) + n
    for url, n in tally["failed"].items():
        if urlsplit(url).port == port:
            counts["failed to post"] += n
    return counts


def describe_callbacks(before: dict[str, int] | None, after: dict[str, int] | None) -> str:
    """The callbacks posted between two `callback_answers`, e.g. "HTTP 200 x 600"."""
    if before is None or after is None:
        return "not counted by this emulated Twilio"
    new = {key: n - before.get(key, 0) for key, n in sorted(after.items())}
    return ", ".join(f"{key} x {n}" for key, n in new.items() if n) or "none"


def await_callbacks(
    twilio_url: str, port: int, before: dict[str, int] | None, expected: int, timeout: float = 30
) -> None:
    """Wait (at most `timeout` s) until `expected` more status callbacks to the server on
    `port` were posted since `before`, so its CPU includes handling them; at once when the
    emulated Twilio does not count them."""
    deadline = time.monotonic() + timeout
    while before is not None and time.monotonic() < deadline:
        now = callback_answers(twilio_url, port)
        if now is None or sum(now.values()) - sum(before.values()) >= expected:
            return
        time.sleep(0.2)
    if before is not None:
        # The CPU figure that follows leaves out the callbacks still to come: say so.
        print(f"  (warning: {expected} status callbacks not all posted within {timeout:.0f} s)")
