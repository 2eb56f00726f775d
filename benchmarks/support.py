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
