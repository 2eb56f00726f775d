"""Dev mode: the adapter and the Twilio emulator in one app, on one port.

REST calls, webhooks and status callbacks all travel over real HTTP to this same server,
so dev mode exercises exactly the code that runs against Twilio; the emulator signs what
it posts, so signatures are checked here too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount

from adapter.devtools import console
from adapter.devtools.emulator import EmulatorConfig, EmulatorState, create_emulator_app
from adapter.runtime.channel import build_channel
from adapter.runtime.settings import Settings
from adapter.web.app import create_app

# Fixed development values, used only when no account is configured.
DEV_ACCOUNT_SID = "AC" + "0" * 30 + "de"
DEV_AUTH_TOKEN = "dev-auth-token-not-a-secret"
DEV_NUMBER = "+15005550006"
# Dev mode's own store, apart from serve's `sms-adapter.sqlite3`: the emulator starts empty
# on every run, so this file is emptied at every start too, and the two agree on what was
# said (ctx.history(), `sms-adapter history`, the console).
DEV_DATABASE = "sms-adapter-dev.sqlite3"
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def database_is_explicit(environ: Mapping[str, str], config_file: str | None) -> bool:
    """Whether SMS_ADAPTER_DATABASE was given (environment or the TOML file): then dev
    uses that database as it is, and never empties it."""
    if environ.get("SMS_ADAPTER_DATABASE", "").strip():
        return True
    if config_file is None:
        return False
    try:
        data = tomllib.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # load_settings reports the file's problem itself
    return "database" in data


def empty_dev_database(path: str = DEV_DATABASE) -> None:
    """Delete dev mode's own SQLite file (with its WAL companions), so the store starts as
    empty as the emulator does."""
    for suffix in _SQLITE_COMPANIONS:
        Path(path + suffix).unlink(missing_ok=True)


@dataclass
class DevApp:
    app: Starlette
    settings: Settings
    emulator: EmulatorState


def create_dev_app(
    settings: Settings,
    base_url: str,
    numbers: list[str] | None = None,
    messaging_services: dict[str, list[str]] | None = None,
) -> DevApp:
    """`base_url` is where this server will be reached, e.g. http://127.0.0.1:8000.
    `messaging_services` groups emulated numbers under Messaging Service SIDs."""
    settings = replace(
        settings,
        account_sid=settings.account_sid or DEV_ACCOUNT_SID,
        auth_token=settings.auth_token or DEV_AUTH_TOKEN,
        api_key=None,
        api_secret=None,
        public_url=base_url,
        twilio_base_url=base_url,
        dev_mode=True,
    )
    assert settings.account_sid is not None and settings.auth_token is not None
    state = EmulatorState()
    emulator = create_emulator_app(
        EmulatorConfig(
            account_sid=settings.account_sid,
            auth_token=settings.auth_token,
            webhook_url=f"{base_url}/api/sms",
            numbers=numbers or [DEV_NUMBER],
            messaging_services=messaging_services or {},
            # With SMS_ADAPTER_STATUS_VIA_APPLICATION, the emulated account has that TwiML
            # App, its status callback URL pointing back here, as you would set it up.
            applications=(
                {settings.status_via_application: f"{base_url}/api/sms/status"}
                if settings.status_via_application
                else {}
            ),
        ),
        state,
    )
    app = create_app(
        settings,
        channel=build_channel(settings),
        extra_routes=[*console.routes(), Mount("/", app=emulator)],
        on_shutdown=[state.aclose],
    )
    console.install_dev_console(app, state, numbers or [DEV_NUMBER])
    return DevApp(app=app, settings=settings, emulator=state)
