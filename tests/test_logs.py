"""Log lines: one per event, text or JSON, the message's SID and conversation as fields,
and never a secret, whatever the code that logs (ours, a bot's, uvicorn's) puts in them.

The last test runs the real thing: `sms-adapter serve` and `sms-adapter emulator` as
processes, with every kind of secret configured, a bot that raises with secrets in its
exception and logs them outright, faults from Twilio, forged signatures, a token in a
URL; then greps everything both processes wrote.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from adapter.devtools.emulator.faults import Fault, Faults
from adapter.logs import message_fields
from adapter.runtime.logging_setup import configure_logging
from adapter.runtime.settings import Settings
from tests.processes import free_port
from tests.servers import wait_for

ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "auth-TOKEN-0f1e2d"
SECONDARY_TOKEN = "secondary-TOKEN-9a8b"
SHARED_KEY = "shared-KEY-5c6d"
ADMIN_TOKEN = "admin-TOKEN-3e4f"
API_KEY = "SK" + "8" * 32
API_SECRET = "api-SECRET-7a7b"
SECRETS = (AUTH_TOKEN, SECONDARY_TOKEN, SHARED_KEY, ADMIN_TOKEN, API_SECRET)
PERSON = "+15551234567"
SID = "SM" + "a" * 32

SETTINGS = Settings(
    account_sid=ACCOUNT_SID,
    auth_token=AUTH_TOKEN,
    auth_token_secondary=SECONDARY_TOKEN,
    api_key=API_KEY,
    api_secret=API_SECRET,
    webhook_shared_key=SHARED_KEY,
    admin_token=ADMIN_TOKEN,
)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the next test."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "httpx")
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names
    }
    levels = {n: logging.getLogger(n).level for n in names}
    yield
    root.handlers[:], root.level = saved_root
    for name, (handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(levels[name])


def _capture(settings: Settings) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(settings, stream)
    return stream


def _raise_with(text: str) -> None:
    try:
        raise RuntimeError(f"the CRM refused {text}")
    except RuntimeError:
        logging.getLogger("mybot").exception("handler failed")


def _basic(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


# Each row: how code might carry a secret into a log line.
LEAKS: list[tuple[str, Callable[[str], None]]] = [
    ("as an argument", lambda s: logging.getLogger("adapter").warning("token is %s", s)),
    ("in the format string", lambda s: logging.getLogger("adapter").error(f"token={s}")),
    ("in a traceback", _raise_with),
    (
        "in a field",
        lambda s: logging.getLogger("adapter").info("sent", extra={"credential": s}),
    ),
    (
        "URL-encoded in a URL",
        lambda s: logging.getLogger("uvicorn.access").info("GET /metrics?t=%s", quote(s + "/")),
    ),
]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(("where", "leak"), LEAKS, ids=[row[0] for row in LEAKS])
@pytest.mark.parametrize("secret", [AUTH_TOKEN, API_SECRET, ADMIN_TOKEN])
def test_a_secret_never_reaches_a_line(
    log_format: str, where: str, leak: Callable[[str], None], secret: str
) -> None:
    stream = _capture(replace(SETTINGS, log_format=log_format))
    leak(secret)
    written = stream.getvalue()
    assert "[redacted]" in written  # the line was written, with the secret taken out
    assert secret not in written
    assert quote(secret, safe="") not in written


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("username", "password"), [(ACCOUNT_SID, AUTH_TOKEN), (API_KEY, API_SECRET)]
)
def test_a_basic_auth_header_never_reaches_a_line(username: str, password: str) -> None:
    stream = _capture(SETTINGS)
    logging.getLogger("httpx").warning("Authorization: Basic %s", _basic(username, password))
    assert stream.getvalue().endswith("httpx: Authorization: Basic [redacted]\n")


def _lower_percent(text: str) -> str:
    """Every character %-encoded, in lower-case hex: what quote() never produces."""
    return "".join(f"%{byte:02x}" for byte in text.encode())


# Each row: an access line as uvicorn writes it, and what must be left of it.
BY_NAME = [
    pytest.param(
        f'GET /console?token={_lower_percent(ADMIN_TOKEN)}&x=1 HTTP/1.1" 200',
        'GET /console?token=[redacted]&x=1 HTTP/1.1" 200',
        id="admin-token-lower-case-percent-encoded",
    ),
    pytest.param(
        f"GET /console/api/feed?TOKEN={ADMIN_TOKEN.upper()} HTTP/1.1",
        "GET /console/api/feed?TOKEN=[redacted] HTTP/1.1",
        id="unknown-value-of-the-token-parameter",
    ),
    pytest.param(
        "GET /console?%74oken=guess HTTP/1.1",
        "GET /console?%74oken=[redacted] HTTP/1.1",
        id="parameter-name-percent-encoded",
    ),
    pytest.param(
        "headers: {'authorization': 'Bearer not-configured-anywhere'}",
        "headers: {'authorization': 'Bearer [redacted]'}",
        id="authorization-header-of-any-value",
    ),
    pytest.param(
        "(b'authorization', b'Basic dXNlcjpwYXNz')",
        "(b'authorization', b'Basic [redacted]')",
        id="raw-asgi-header",
    ),
]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("line", "expected"), BY_NAME)
def test_credentials_are_hidden_by_name_whatever_their_encoding(line: str, expected: str) -> None:
    stream = _capture(SETTINGS)
    logging.getLogger("uvicorn.access").info("%s", line)
    assert stream.getvalue().endswith(f"uvicorn.access: {expected}\n")


@pytest.mark.usefixtures("restore_logging")
def test_a_secret_is_found_in_any_percent_encoding() -> None:
    stream = _capture(SETTINGS)
    logging.getLogger("adapter").warning("posted %s", _lower_percent(AUTH_TOKEN))
    assert stream.getvalue().endswith("adapter: posted [redacted]\n")


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("short", ["ok", "bot", "text", "hello1"])
def test_a_short_secret_never_mangles_ordinary_words(short: str) -> None:
    stream = _capture(replace(SETTINGS, admin_token=short))
    line = "text SMaaa accepted: ok, the bot said hello1 (texts: 2)"
    logging.getLogger("adapter").info(line)
    logging.getLogger("uvicorn.access").info("GET /console?token=%s HTTP/1.1", short)
    assert stream.getvalue().splitlines()[-2].endswith(f"adapter: {line}")
    assert stream.getvalue().endswith("GET /console?token=[redacted] HTTP/1.1\n")


@pytest.mark.usefixtures("restore_logging")
def test_a_long_secret_is_not_replaced_inside_a_longer_word() -> None:
    stream = _capture(replace(SETTINGS, admin_token="abcdefgh"))
    logging.getLogger("adapter").info("xabcdefghy and abcdefgh")
    assert stream.getvalue().endswith("adapter: xabcdefghy and [redacted]\n")


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("mask", "text", "expected"),
    [
        (True, "text from +15551234567", "text from +1555***4567"),
        (True, "+447700900123|+15005550006", "+4477***0123|+1500***0006"),
        (True, "whatsapp:+15551234567", "whatsapp:+1555***4567"),
        (True, "GET /Messages.json?To=%2B15551234567", "GET /Messages.json?To=%2B1555***4567"),
        (True, "outbox 17 sent as SMaaaa", "outbox 17 sent as SMaaaa"),
        (False, "text from +15551234567", "text from +15551234567"),
    ],
)
def test_phone_numbers_are_masked_when_asked(mask: bool, text: str, expected: str) -> None:
    stream = _capture(Settings(log_mask_numbers=mask))
    logging.getLogger("adapter").info("%s", text, extra=message_fields(SID, text))
    line = stream.getvalue().strip()
    assert line.endswith(f": {expected} [message_sid={SID} conversation={expected}]")


@pytest.mark.usefixtures("restore_logging")
def test_json_gives_one_object_per_line_with_the_message_fields() -> None:
    stream = _capture(Settings(log_format="json"))
    logger = logging.getLogger("adapter.webhook")
    logger.info("text %s accepted", SID, extra=message_fields(SID, f"+15005550006|{PERSON}"))
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("could not store text %s", SID, extra=message_fields(SID))

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the traceback stays inside its line
    accepted, failed = (json.loads(line) for line in lines)
    assert accepted["message"] == f"text {SID} accepted"
    assert accepted["level"] == "info" and accepted["logger"] == "adapter.webhook"
    assert accepted["message_sid"] == SID
    assert accepted["conversation"] == f"+15005550006|{PERSON}"
    assert failed["level"] == "error" and failed["message_sid"] == SID
    assert "ValueError: bad\nthing" in failed["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_configuring_again_replaces_the_handler_instead_of_doubling_lines() -> None:
    configure_logging(Settings(), io.StringIO())
    stream = _capture(Settings())
    logging.getLogger("adapter").warning("once")
    assert stream.getvalue().count("once") == 1


# -- a full run, over real processes ------------------------------------------------------

BOT = """
import logging
import os

from adapter import Context, Router

router = Router()
SECRET_NAMES = (
    "TWILIO_AUTH_TOKEN",
    "TWILIO_AUTH_TOKEN_SECONDARY",
    "TWILIO_API_SECRET",
    "SMS_ADAPTER_WEBHOOK_SHARED_KEY",
    "SMS_ADAPTER_ADMIN_TOKEN",
)


@router.message()
async def handle(ctx: Context) -> None:
    secrets = " ".join(os.environ[name] for name in SECRET_NAMES)
    if ctx.text == "boom":
        raise RuntimeError(f"could not log in with {secrets}")
    if ctx.text == "leak":
        logging.getLogger("leaky_bot").warning("my config: %s", secrets)
    await ctx.reply(f"You said: {ctx.text}")
"""
# With these rates and this seed the emulator answers its first create with 429, its
# second with 500, and the next eight normally (checked below, before relying on it).
FAULTS = "429=0.2,500=0.2,seed=6213"


def _start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return stdout + stderr


async def _ready(client: httpx.AsyncClient, url: str, process: subprocess.Popen[str]) -> None:
    async with asyncio.timeout(30):
        while True:
            assert process.poll() is None, "a process exited during start-up"
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)


async def _replies(client: httpx.AsyncClient, emulator: str) -> list[str]:
    messages = (await client.get(f"{emulator}/_emulator/messages")).json()
    return sorted(m["body"] for m in messages if m["direction"].startswith("outbound"))


async def test_a_full_run_logs_no_secret_anywhere(tmp_path: Path) -> None:
    draws = random.Random(6213)
    faults = Faults(too_many_requests=0.2, server_error=0.2)
    expected = [Fault.TOO_MANY_REQUESTS, Fault.SERVER_ERROR, *[None] * 8]
    assert [faults.choose(draws) for _ in expected] == expected

    (tmp_path / "leaky_bot.py").write_text(textwrap.dedent(BOT))
    adapter_port, emulator_port = free_port(), free_port()
    adapter, emulator = f"http://127.0.0.1:{adapter_port}", f"http://127.0.0.1:{emulator_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_AUTH_TOKEN_SECONDARY": SECONDARY_TOKEN,
        "TWILIO_API_KEY": API_KEY,
        "TWILIO_API_SECRET": API_SECRET,
        "SMS_ADAPTER_WEBHOOK_SHARED_KEY": SHARED_KEY,
        "SMS_ADAPTER_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    adapter_env = env | {
        "SMS_ADAPTER_PUBLIC_URL": adapter,
        "SMS_ADAPTER_TWILIO_BASE_URL": emulator,
        "SMS_ADAPTER_DATABASE": str(tmp_path / "adapter.sqlite3"),
        "SMS_ADAPTER_BOTS": "leaky_bot:router",
        "SMS_ADAPTER_LOG_FORMAT": "json",
    }
    emulator_args = ["emulator", "--port", str(emulator_port), "--faults", FAULTS]
    emulator_args += ["--webhook-url", f"{adapter}/api/sms"]
    processes = [
        _start(["serve", "--port", str(adapter_port)], adapter_env, tmp_path),
        _start(emulator_args, env, tmp_path),
    ]
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await _ready(client, f"{adapter}/readyz", processes[0])
            await _ready(client, f"{emulator}/_emulator/messages", processes[1])
            for person, body in [(PERSON, "hello"), ("+15557654321", "leak"), (PERSON, "boom")]:
                answer = await client.post(
                    f"{emulator}/_emulator/inbound", data={"From": person, "Body": body}
                )
                assert answer.json()["webhook_status"] == 200
            forged = {"MessageSid": SID, "AccountSid": ACCOUNT_SID, "From": PERSON, "Body": "x"}
            for path in ("/api/sms", "/api/sms/status"):
                refused = await client.post(
                    f"{adapter}{path}", data=forged, headers={"X-Twilio-Signature": "Zm9yZ2Vk"}
                )
                assert refused.status_code == 403
            wrong = await client.get(f"{adapter}/metrics", headers={"Authorization": "Bearer no"})
            assert wrong.status_code == 401
            in_url = await client.get(f"{adapter}/metrics?token={ADMIN_TOKEN}")
            assert in_url.status_code == 401

            expected_replies = ["You said: hello", "You said: leak"]

            async def replied() -> bool:
                return await _replies(client, emulator) == expected_replies

            await wait_for(replied, timeout=30)
    finally:
        adapter_output, emulator_output = (_stop(process) for process in processes)

    # The run did produce the lines that could have leaked.
    events = [json.loads(line) for line in adapter_output.splitlines() if line.startswith("{")]
    messages = [event["message"] for event in events]
    [raised] = [e for e in events if "raised on activity" in e["message"]]
    assert "RuntimeError: could not log in with [redacted] [redacted]" in raised["exception"]
    assert raised["message_sid"].startswith("SM") and raised["bot"] == "leaky_bot:router"
    assert any(m.startswith("my config:") for m in messages)
    assert any("20429" in m and "retrying" in m for m in messages)
    assert any("HTTP 500" in m and "retrying" in m for m in messages)
    assert sum("invalid Twilio signature" in m or "rejected /api/sms" in m for m in messages) == 2
    assert any("GET /metrics?token=[redacted]" in m for m in messages)
    assert "Application startup complete." in messages
    accepted = [e for e in events if " accepted (conversation" in e["message"]]
    assert len(accepted) == 3 and all(e["message_sid"].startswith("SM") for e in accepted)
    assert all("conversation" in e for e in accepted)
    # One line per event: every line the adapter wrote is one JSON object.
    assert len(events) == len(adapter_output.splitlines())

    for secret in SECRETS:
        assert secret not in adapter_output
        assert secret not in emulator_output
    assert _basic(ACCOUNT_SID, AUTH_TOKEN) not in adapter_output + emulator_output
    assert _basic(API_KEY, API_SECRET) not in adapter_output + emulator_output
