"""The sms-adapter command as a user runs it: real processes, real ports."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from adapter.cli.dev import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN
from adapter.cli.server import server_stack
from tests.servers import bound_socket, wait_until_answering

CLI = [sys.executable, "-m", "adapter.cli"]
PERSON = "+15551234567"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env["SMS_ADAPTER_DATABASE"] = str(tmp_path / "cli.sqlite3")
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("extra_env", "named"),
    [
        ({}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}, "TWILIO_AUTH_TOKEN"),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
                "TWILIO_AUTH_TOKEN": "t0ken-xyz",
                "SMS_ADAPTER_BOTS": "no.such.module:router",
            },
            "SMS_ADAPTER_BOTS",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
                "TWILIO_AUTH_TOKEN": "t0ken-xyz",
                "SMS_ADAPTER_RATE_LIMIT": "fast",
            },
            "SMS_ADAPTER_RATE_LIMIT",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
                "TWILIO_AUTH_TOKEN": "t0ken-xyz",
                "SMS_ADAPTER_DATABASE": "/no/such/dir/db.sqlite3",
            },
            "SMS_ADAPTER_DATABASE",
        ),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
                "TWILIO_AUTH_TOKEN": "t0ken-xyz",
                "SMS_ADAPTER_PUBLIC_URL": "example.com",
            },
            "SMS_ADAPTER_PUBLIC_URL",
        ),
    ],
)
def test_serve_refuses_bad_configuration_naming_the_setting(
    tmp_path: Path, extra_env: dict[str, str], named: str
) -> None:
    result = _run(["serve", "--port", "1"], _env(tmp_path, **extra_env))
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert "t0ken-xyz" not in result.stderr + result.stdout


def test_dev_runs_prints_what_to_do_and_stops_on_sigterm(tmp_path: Path) -> None:
    sock, base = bound_socket()
    port = sock.getsockname()[1]
    sock.close()  # dev binds the port itself
    process = subprocess.Popen(
        [*CLI, "dev", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_answering(process, f"{base}/readyz")
        answer = httpx.post(
            f"{base}/_emulator/inbound", data={"From": "+15551234567", "Body": "hi"}, timeout=5
        )
        assert answer.json()["webhook_status"] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    # uvicorn re-raises the signal after a graceful shutdown, as a well-behaved service does.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    assert f"http://127.0.0.1:{port}" in stdout
    assert "_emulator/inbound" in stdout
    # The server stack, in the banner and once in the log: uvloop + httptools if installed.
    assert f"server:   {server_stack()}" in stdout
    assert stderr.count(f"HTTP server: {server_stack()}") == 1
    assert "Traceback" not in stderr


def test_unknown_settings_are_reported(tmp_path: Path) -> None:
    result = _run(["serve", "--port", "1"], _env(tmp_path, SMS_ADAPTER_RATE_LIMTI="10/s"))
    assert "unknown setting SMS_ADAPTER_RATE_LIMTI" in result.stderr


def test_serve_reports_every_bad_setting_at_once_and_refuses_to_start(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        TWILIO_ACCOUNT_SID="AC-from-the-wrong-field",
        TWILIO_AUTH_TOKEN="t0ken-xyz",
        SMS_ADAPTER_PUBLIC_URL="example.com",
        SMS_ADAPTER_RATE_LIMIT="fast",
        SMS_ADAPTER_SENDER_MSP="1",
    )
    result = _run(["serve", "--port", "1"], env)
    assert result.returncode == 2
    for named in ("TWILIO_ACCOUNT_SID", "SMS_ADAPTER_PUBLIC_URL", "SMS_ADAPTER_RATE_LIMIT"):
        assert named in result.stderr
    assert "did you mean SMS_ADAPTER_SENDER_MPS?" in result.stderr
    assert "3 settings cannot be used" in result.stderr
    assert "Traceback" not in result.stderr
    assert "t0ken-xyz" not in result.stderr + result.stdout


def _dev_session(tmp_path: Path, port: int, base: str, body: str) -> tuple[str, list[str]]:
    """One `sms-adapter dev` run in `tmp_path` (no SMS_ADAPTER_DATABASE): text `body`, wait
    for the reply, read the conversation back with the banner's `sms-adapter history`
    command. Returns the banner and the bodies history printed."""
    env = _env(tmp_path)
    del env["SMS_ADAPTER_DATABASE"]
    process = subprocess.Popen(
        [*CLI, "dev", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_answering(process, f"{base}/readyz")
        assert process.stdout is not None
        banner = ""
        while "Stop with Ctrl+C." not in banner:
            banner += process.stdout.readline()
        httpx.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": body}, timeout=5)
        deadline = time.monotonic() + 20
        while len(httpx.get(f"{base}/_emulator/messages", timeout=5).json()) < 2:
            assert time.monotonic() < deadline, "the bot did not answer"
            time.sleep(0.1)
        command = shlex.split(banner.split("(from another terminal):\n")[1].splitlines()[0])
        assignments = dict(word.split("=", 1) for word in command if "=" in word)
        arguments = [word for word in command if "=" not in word][2:]  # after "sms-adapter history"
        history = subprocess.run(
            [*CLI, "history", *arguments, "--json"],
            env={**env, **assignments},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert history.returncode == 0, history.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    bodies = [message["body"] for message in json.loads(history.stdout)["messages"]]
    return banner, bodies


def test_dev_keeps_a_database_of_its_own_emptied_at_every_start(tmp_path: Path) -> None:
    serves = tmp_path / "sms-adapter.sqlite3"
    serves.write_bytes(b"serve's database, not dev's")
    sock, base = bound_socket()
    port = sock.getsockname()[1]
    sock.close()

    banner, first = _dev_session(tmp_path, port, base, "first run")
    assert "first run" in first
    assert DEV_AUTH_TOKEN in banner and DEV_ACCOUNT_SID in banner
    assert "sms-adapter-dev.sqlite3" in banner
    assert (tmp_path / "sms-adapter-dev.sqlite3").exists()

    # A second run starts empty, store and emulator alike: the cached first conversation
    # is gone, as it is from the emulator.
    _, second = _dev_session(tmp_path, port, base, "second run")
    assert "second run" in second
    assert "first run" not in second
    assert serves.read_bytes() == b"serve's database, not dev's"


def test_dev_uses_an_explicit_database_as_it_is(tmp_path: Path) -> None:
    sock, base = bound_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = _env(tmp_path, SMS_ADAPTER_DATABASE=str(tmp_path / "mine.sqlite3"))
    process = subprocess.Popen(
        [*CLI, "dev", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_answering(process, f"{base}/readyz")
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    assert "mine.sqlite3" in stdout
    assert (tmp_path / "mine.sqlite3").exists()
    assert not (tmp_path / "sms-adapter-dev.sqlite3").exists()


def test_readme_gives_the_dev_accounts_credentials() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"`{DEV_ACCOUNT_SID}`" in readme
    assert f"`{DEV_AUTH_TOKEN}`" in readme
