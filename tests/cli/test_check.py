"""`sms-adapter check` as an operator runs it: a real process, its lines, its exit code.

`--live` talks to the emulator on a real uvicorn in this test's event loop (the check
process runs in a thread meanwhile), which answers Fetch Account and IncomingPhoneNumbers
as Twilio does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapter.devtools.emulator import EmulatorConfig, create_emulator_app
from tests.servers import bound_socket, serve

CLI = [sys.executable, "-m", "adapter.cli", "check"]
ACCOUNT_SID = "AC" + "4" * 32
AUTH_TOKEN = "check-t0ken-never-shown"
OUR_NUMBER = "+15005550006"
PUBLIC_URL = "https://bot.example.com"
API_KEY, API_SECRET = "SK" + "5" * 32, "check-api-secret-never-shown"


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SMS_ADAPTER_"))}
    env |= {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "SMS_ADAPTER_PUBLIC_URL": PUBLIC_URL,
        "SMS_ADAPTER_BOTS": f"{OUR_NUMBER}=bots.echo:router,*=bots.help_desk:router",
        "SMS_ADAPTER_DATABASE": str(tmp_path / "adapter.sqlite3"),
    }
    for name, value in settings.items():
        if value:
            env[name] = value
        else:
            env.pop(name, None)  # "" means: leave the setting out
    return env


def _check(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def _assert_no_secret(result: subprocess.CompletedProcess[str]) -> None:
    assert AUTH_TOKEN not in result.stdout + result.stderr
    assert API_SECRET not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_good_configuration_passes(tmp_path: Path) -> None:
    result = _check(_env(tmp_path))
    _assert_no_secret(result)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[-1] == "configuration looks ready"
    assert all(line.startswith("ok ") for line in lines[:-1]), result.stdout
    assert f"ok   route {OUR_NUMBER}: bots.echo:router imports and is a Router" in lines
    assert "ok   default route (*): bots.help_desk:router imports and is a Router" in lines
    assert f"ok   public URL: Twilio posts texts to {PUBLIC_URL}/api/sms" in lines


def test_obsolete_and_invalid_route_send_options_are_reported(tmp_path: Path) -> None:
    config = tmp_path / "adapter.toml"
    config.write_text(
        '[[routes]]\ndefault = true\nbot = "bots.echo:router"\n'
        '[routes.send]\nvalidity_period = 600\nmax_price = "0.05"\n'
    )
    result = _check(_env(tmp_path), "--config", str(config))
    assert result.returncode == 0, result.stdout
    assert "warn default route (*): [routes.send] max_price is obsolete" in result.stdout

    config.write_text(
        '[[routes]]\ndefault = true\nbot = "bots.echo:router"\n'
        "[routes.send]\nvalidity_period = 90000\n"
    )
    refused = _check(_env(tmp_path), "--config", str(config))
    _assert_no_secret(refused)
    assert refused.returncode == 1
    assert "FAIL bots: [[routes]] in the config file: [[routes]] #1: validity_period:" in (
        refused.stdout
    )


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"TWILIO_ACCOUNT_SID": ""}, "FAIL credentials: TWILIO_ACCOUNT_SID is not set"),
        ({"TWILIO_AUTH_TOKEN": ""}, "FAIL credentials: TWILIO_AUTH_TOKEN is not set"),
        (
            {"TWILIO_ACCOUNT_SID": "AC123"},
            "FAIL settings: TWILIO_ACCOUNT_SID 'AC123' (environment) is invalid: expected AC "
            "followed by 32 hex digits",
        ),
        ({"TWILIO_API_KEY": "SK" + "1" * 32}, "FAIL credentials: TWILIO_API_KEY and"),
        ({"SMS_ADAPTER_BOTS": "no_such_bot:router"}, "FAIL bots: SMS_ADAPTER_BOTS: bot"),
        ({"SMS_ADAPTER_BOTS": "12345=bots.echo:router"}, "FAIL bots: SMS_ADAPTER_BOTS"),
        ({"SMS_ADAPTER_BOTS": "bots.echo:no_router"}, "has no 'no_router'"),
        ({"SMS_ADAPTER_PUBLIC_URL": "http://bot.example.com"}, "FAIL public URL: http://"),
        ({"SMS_ADAPTER_PUBLIC_URL": "bot.example.com"}, "FAIL settings: SMS_ADAPTER_PUBLIC_URL"),
        (
            {"SMS_ADAPTER_PUBLIK_URL": PUBLIC_URL},
            "FAIL settings: unknown setting SMS_ADAPTER_PUBLIK",
        ),
        ({"SMS_ADAPTER_RATE_LIMIT": "fast"}, "FAIL settings: SMS_ADAPTER_RATE_LIMIT 'fast'"),
        (
            {"SMS_ADAPTER_DATABASE": "/no/such/dir/db.sqlite3"},
            "FAIL database: SMS_ADAPTER_DATABASE",
        ),
        ({"SMS_ADAPTER_VALIDATE_SIGNATURES": "false"}, "FAIL signatures: SMS_ADAPTER_VALIDATE"),
    ],
)
def test_each_problem_fails_the_check_with_its_reason(
    tmp_path: Path, settings: dict[str, str], expected: str
) -> None:
    result = _check(_env(tmp_path, **settings))
    _assert_no_secret(result)
    assert result.returncode == 1, result.stdout
    assert expected in result.stdout
    assert result.stdout.splitlines()[-1].endswith("problem(s) found")


def test_a_bot_that_leaks_its_secrets_while_loading_is_reported_without_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "leaky.py").write_text(
        "import logging, os\n"
        "token = os.environ['TWILIO_AUTH_TOKEN']\n"
        "logging.getLogger('leaky').warning('loading with %s', token)\n"
        "raise RuntimeError(f'cannot log in with {token}')\n"
    )
    result = _check(_env(tmp_path, SMS_ADAPTER_BOTS="leaky:router"), cwd=tmp_path)
    _assert_no_secret(result)
    assert result.returncode == 1
    assert "RuntimeError: cannot log in with [redacted]" in result.stdout
    assert "leaky: loading with [redacted]" in result.stderr


@pytest.mark.parametrize(
    ("public_url", "verdict"),
    [
        (None, "warn public URL: SMS_ADAPTER_PUBLIC_URL is not set"),
        ("http://127.0.0.1:8000", "ok   public URL"),
        ("http://localhost:8000", "ok   public URL"),
        ("http://[::1]:8000", "ok   public URL"),
        ("http://10.0.0.5:8000", "FAIL public URL"),
    ],
)
def test_plain_http_is_for_loopback_only(
    tmp_path: Path, public_url: str | None, verdict: str
) -> None:
    result = _check(_env(tmp_path, SMS_ADAPTER_PUBLIC_URL=public_url or ""))
    assert verdict in result.stdout
    assert result.returncode == (1 if verdict.startswith("FAIL") else 0)


# -- --live, against the emulator ----------------------------------------------------------


@pytest.fixture
async def twilio() -> AsyncIterator[str]:
    sock, base = bound_socket()
    config = EmulatorConfig(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        webhook_url=f"{PUBLIC_URL}/api/sms",
        numbers=[OUR_NUMBER, "+15005550007"],
        api_keys={API_KEY: API_SECRET},
    )
    async with serve(create_emulator_app(config), sock):
        yield base


async def _live(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The emulator serves from this event loop while the check runs in a thread.
    return await asyncio.to_thread(_check, env, "--live")


@pytest.mark.parametrize(
    ("credentials", "used"),
    [
        ({}, "REST calls use the auth token"),
        ({"TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET}, f"API key {API_KEY}"),
    ],
)
async def test_live_passes_when_twilio_knows_the_account_and_the_numbers(
    tmp_path: Path, twilio: str, credentials: dict[str, str], used: str
) -> None:
    bots = f"{OUR_NUMBER}=bots.echo:router,+15005550007=bots.help_desk:router"
    env = _env(tmp_path, SMS_ADAPTER_TWILIO_BASE_URL=twilio, SMS_ADAPTER_BOTS=bots, **credentials)
    result = await _live(env)
    _assert_no_secret(result)
    assert result.returncode == 0, result.stdout
    assert used in result.stdout
    assert f"ok   Twilio account: {ACCOUNT_SID}" in result.stdout
    for number in (OUR_NUMBER, "+15005550007"):
        assert f"ok   number {number}: PN" in result.stdout


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"TWILIO_AUTH_TOKEN": "a-wrong-token"},
            "FAIL Twilio account: Twilio refused the credentials",
        ),
        (
            {"SMS_ADAPTER_BOTS": "+15550009999=bots.echo:router"},
            f"FAIL number +15550009999: is not a number of account {ACCOUNT_SID}",
        ),
        (
            {"SMS_ADAPTER_PUBLIC_URL": "https://elsewhere.example.com"},
            f"warn number {OUR_NUMBER}:",
        ),
    ],
)
async def test_live_reports_what_twilio_refuses(
    tmp_path: Path, twilio: str, settings: dict[str, str], expected: str
) -> None:
    result = await _live(_env(tmp_path, SMS_ADAPTER_TWILIO_BASE_URL=twilio, **settings))
    _assert_no_secret(result)
    assert "a-wrong-token" not in result.stdout + result.stderr
    assert expected in result.stdout
    assert result.returncode == (1 if expected.startswith("FAIL") else 0)


async def test_live_fails_when_twilio_cannot_be_reached(tmp_path: Path) -> None:
    sock, nowhere = bound_socket()
    sock.close()  # nothing listens there any more
    result = await _live(_env(tmp_path, SMS_ADAPTER_TWILIO_BASE_URL=nowhere))
    _assert_no_secret(result)
    assert result.returncode == 1
    assert f"FAIL Twilio account: cannot reach {nowhere}" in result.stdout


SERVICE = "MG" + "7" * 32


@pytest.fixture
async def twilio_with_service() -> AsyncIterator[str]:
    sock, base = bound_socket()
    config = EmulatorConfig(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        webhook_url=f"{PUBLIC_URL}/api/sms#rc=3&rp=all",
        numbers=[OUR_NUMBER, "+15005550007"],
        messaging_services={SERVICE: ["+15005550007"]},
    )
    async with serve(create_emulator_app(config), sock):
        yield base


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        # A connection-override fragment on Twilio's side is not a difference.
        (PUBLIC_URL, f"ok   Messaging Service {SERVICE}: "),
        (
            "https://elsewhere.example.com",
            f"warn Messaging Service {SERVICE}: emulated service 7777, 1 number(s); Twilio "
            f"posts its texts to {PUBLIC_URL}/api/sms#rc=3&rp=all, not "
            "https://elsewhere.example.com/api/sms: set the Incoming Messages request URL of "
            f"Messaging Service {SERVICE} (Integration) to https://elsewhere.example.com/api/sms",
        ),
    ],
)
async def test_live_checks_where_twilio_posts_a_routed_services_texts(
    tmp_path: Path, twilio_with_service: str, public_url: str, expected: str
) -> None:
    bots = f"{OUR_NUMBER}=bots.echo:router,{SERVICE}=bots.help_desk:router"
    env = _env(
        tmp_path,
        SMS_ADAPTER_TWILIO_BASE_URL=twilio_with_service,
        SMS_ADAPTER_BOTS=bots,
        SMS_ADAPTER_PUBLIC_URL=public_url,
    )
    result = await _live(env)
    _assert_no_secret(result)
    assert expected in result.stdout
    assert result.returncode == 0, result.stdout


def test_every_bad_setting_and_unknown_name_is_reported_at_once(tmp_path: Path) -> None:
    result = _check(
        _env(
            tmp_path,
            TWILIO_ACCOUNT_SID="AC123",
            SMS_ADAPTER_PORT="eighty",
            SMS_ADAPTER_RATE_LIMIT="lots",
            SMS_ADAPTER_SEND_MAX_ATEMPTS="3",
        )
    )
    _assert_no_secret(result)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL settings")]
    assert len(failed) == 4, result.stdout
    assert "TWILIO_ACCOUNT_SID 'AC123'" in failed[0]
    assert "invalid rate 'lots': expected COUNT/DURATION" in result.stdout
    assert "SMS_ADAPTER_PORT 'eighty' (environment) is invalid: expected a whole number" in (
        result.stdout
    )
    assert "invalid literal" not in result.stdout
    assert "SMS_ADAPTER_SEND_MAX_ATEMPTS ignored (did you mean SMS_ADAPTER_SEND_MAX_ATTEMPTS?)" in (
        result.stdout
    )
