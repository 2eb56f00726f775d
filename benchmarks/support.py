"""Shared pieces of the benchmark scripts: processes on loopback, signed webhook forms."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

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


def adapter_env(database: str, public_url: str, twilio_base_url: str, bots: str) -> dict[str, str]:
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
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str], ready_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{args[2:]} exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
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


@contextlib.contextmanager
def emulated_twilio(port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The Twilio emulator in its own process, noting every Send Message
    (benchmarks/recording_twilio.py), at http://127.0.0.1:<port>. Status callbacks start off."""
    url = f"http://127.0.0.1:{port}"
    args = [*uvicorn_app("benchmarks.recording_twilio:build", port), "--factory"]
    env = {**env, "BENCH_STATUS_CALLBACKS": "0"}
    with process(args, env, f"{url}/_bench/count") as twilio:
        yield twilio


def sends_received(twilio_url: str) -> int:
    return int(httpx.get(f"{twilio_url}/_bench/count", timeout=30).json())


def arrivals(twilio_url: str, prefix: str) -> dict[str, float]:
    """{reply body: when its Send Message arrived} for bodies starting with `prefix`."""
    response = httpx.get(f"{twilio_url}/_bench/arrivals", params={"prefix": prefix}, timeout=60)
    return dict(response.json())


def set_callbacks(twilio_url: str, on: bool) -> None:
    httpx.post(f"{twilio_url}/_bench/callbacks", params={"on": "1" if on else "0"}, timeout=10)
