"""`sms-adapter history` as an operator runs it: a real `sms-adapter emulator` process
holding the conversation, and the command in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.servers import bound_socket, wait_until_answering

CLI = [sys.executable, "-m", "adapter.cli"]
ACCOUNT_SID = "AC" + "9" * 32
AUTH_TOKEN = "history-cli-test-token"
OURS = "+15005550006"  # the emulator's default number


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    sock, base = bound_socket()
    port = sock.getsockname()[1]
    sock.close()  # the emulator binds the port itself
    env = _env(Path("/nonexistent"), base)
    process = subprocess.Popen(
        [*CLI, "emulator", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_answering(process, f"{base}/_emulator/messages")
        yield base
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _env(tmp_path: Path, twilio_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env |= {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SMS_ADAPTER_TWILIO_BASE_URL": twilio_url,
        "SMS_ADAPTER_DATABASE": str(tmp_path / "adapter.sqlite3"),
    }
    return env | extra


def history(
    tmp_path: Path, twilio_url: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "history", *args],
        env=_env(tmp_path, twilio_url, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def seed(twilio_url: str, person: str, count: int) -> None:
    """`count` seeded texts a month ago, then a photo from the person and our answer."""
    start = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    with httpx.Client(base_url=twilio_url, timeout=10) as http:
        http.post(
            "/_emulator/seed",
            json={"ours": OURS, "person": person, "count": count, "start": start},
        ).raise_for_status()
        http.post(
            "/_emulator/inbound",
            data={"From": person, "Body": "here is the photo", "MediaUrl": "https://x.test/a.jpg"},
        ).raise_for_status()
        http.post(
            f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
            data={"From": OURS, "To": person, "Body": "Got it,\nthanks"},
            auth=(ACCOUNT_SID, AUTH_TOKEN),
        ).raise_for_status()

        def delivered() -> bool:
            answer = http.get("/_emulator/messages", params={"to": person}).json()
            return bool(answer) and answer[-1]["status"] == "delivered"

        deadline = time.monotonic() + 10
        while not delivered():
            assert time.monotonic() < deadline, "our answer was never delivered"
            time.sleep(0.05)


def test_prints_the_latest_messages_as_a_transcript(tmp_path: Path, emulator: str) -> None:
    person = "+15551110001"
    seed(emulator, person, 2500)

    first = history(tmp_path, emulator, person, "--with", OURS, "--limit", "3")
    again = history(tmp_path, emulator, person, "--with", OURS, "--limit", "3")

    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"{OURS} ⇄ {person}: the latest 3 messages (UTC)"
    assert lines[1].endswith("→  delivered  Seeded message 2500 of 2500")
    assert lines[2].endswith("←  received   here is the photo  [1 media]")
    assert lines[3].endswith("→  delivered  Got it, ⏎ thanks")
    datetime.strptime(lines[3][:19], "%Y-%m-%d %H:%M:%S")  # each line starts with the time
    # 1251 texts each way: pages of 1000 and 251 in both directions.
    assert "full sync: 4 pages, 2,502 messages fetched in 4 requests" in first.stderr
    assert "Traceback" not in first.stderr
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    assert "incremental sync:" in again.stderr
    assert "in 3 requests" in again.stderr


def test_json_output(tmp_path: Path, emulator: str) -> None:
    person = "+15551110002"
    seed(emulator, person, 10)

    result = history(tmp_path, emulator, person, "--with", OURS, "--limit", "2", "--json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["with"], data["person"], data["sync"]["kind"]) == (OURS, person, "full")
    photo, answer = data["messages"]
    assert (photo["direction"], photo["from"], photo["num_media"]) == ("inbound", person, 1)
    assert (answer["direction"], answer["body"], answer["status"]) == (
        "outbound",
        "Got it,\nthanks",
        "delivered",
    )


def test_our_number_comes_from_the_routes_when_there_is_only_one(
    tmp_path: Path, emulator: str
) -> None:
    person = "+15551110003"
    seed(emulator, person, 0)

    routed = history(tmp_path, emulator, person, SMS_ADAPTER_BOTS=f"{OURS}=bots.echo:router")
    unrouted = history(tmp_path, emulator, person)

    assert routed.returncode == 0, routed.stderr
    assert routed.stdout.startswith(f"{OURS} ⇄ {person}: the latest 2 messages")
    assert unrouted.returncode == 2
    assert "say which of our numbers the conversation is with" in unrouted.stderr


@pytest.mark.parametrize(
    ("args", "env", "code", "said"),
    [
        (["5551234567", "--with", OURS], {}, 2, "the person's number '5551234567' is not an E.164"),
        (["+15551234567", "--with", "+1"], {}, 2, "our number '+1' is not an E.164 number"),
        (["+15551234567", "--limit", "0"], {}, 2, "expected a whole number of at least 1"),
        (
            ["+15551234567", "--with", OURS],
            {"TWILIO_AUTH_TOKEN": "a-wrong-token"},
            1,
            "Twilio list failed: HTTP 401, error 20003 (authentication failed)",
        ),
    ],
)
def test_mistakes_end_with_one_line_and_no_traceback(
    tmp_path: Path, emulator: str, args: list[str], env: dict[str, str], code: int, said: str
) -> None:
    result = history(tmp_path, emulator, *args, **env)
    assert result.returncode == code
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert "a-wrong-token" not in result.stderr + result.stdout
