"""sms-adapter dev | serve | emulator | history | check

User mistakes (bad settings, missing credentials) end with one clear line and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from adapter.asgi import build_app
from adapter.cli.dev import (
    DEV_ACCOUNT_SID,
    DEV_AUTH_TOKEN,
    DEV_DATABASE,
    DEV_NUMBER,
    database_is_explicit,
    empty_dev_database,
)
from adapter.cli.history import add_history_command
from adapter.cli.server import ConnectionLimits, server_stack
from adapter.cli.server import run as run_server
from adapter.config_error import ConfigError
from adapter.runtime.channel import build_channel
from adapter.runtime.gc_tuning import tune_garbage_collector
from adapter.runtime.logging_setup import configure_logging
from adapter.runtime.settings import Settings, load_settings
from adapter.store.base import StoreError
from adapter.store.factory import describe_database

logger = logging.getLogger("adapter.cli")


def _load(args: argparse.Namespace, **overrides: object) -> Settings:
    settings, warnings = load_settings(os.environ, getattr(args, "config", None), **overrides)
    configure_logging(settings)
    for warning in warnings:
        logger.warning(warning)
    return settings


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=settings.header_timeout.total_seconds(),
        body_timeout=settings.body_timeout.total_seconds(),
        keepalive_timeout=settings.keepalive_timeout.total_seconds(),
        max_connections=settings.max_connections,
    )


def _run(app: object, host: str, port: int, settings: Settings) -> None:
    tune_garbage_collector()
    run_server(
        app,
        connection_limits(settings),
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )


def cmd_dev(args: argparse.Namespace) -> None:
    from adapter.cli.dev import create_dev_app

    host = args.host or "127.0.0.1"
    port = args.port or 8000
    local = f"http://127.0.0.1:{port}"
    own_database = not database_is_explicit(os.environ, args.config)
    settings = _load(args, host=host, port=port, database=DEV_DATABASE if own_database else None)
    if own_database:
        empty_dev_database(DEV_DATABASE)
    dev = create_dev_app(settings, local, [args.number])
    using_dev_values = not settings.auth_token
    if using_dev_values:
        credentials = (
            f"  account:  {dev.settings.account_sid} (development values; no Twilio account needed)\n"
            f"  token:    {dev.settings.auth_token}"
        )
        token = dev.settings.auth_token
    else:
        # A real auth token is a secret: it is never printed.
        credentials = f"  account:  {dev.settings.account_sid} (token: your TWILIO_AUTH_TOKEN)"
        token = "$TWILIO_AUTH_TOKEN"
    # An explicit database may be a postgresql:// URL with a password: not printed.
    database = settings.database if own_database else "$SMS_ADAPTER_DATABASE"
    history_command = (
        f"TWILIO_ACCOUNT_SID={dev.settings.account_sid} TWILIO_AUTH_TOKEN={token} "
        f"SMS_ADAPTER_TWILIO_BASE_URL={local} SMS_ADAPTER_DATABASE={database} "
        f"sms-adapter history +15551234567 --with {args.number}"
    )
    store_note = (
        "emptied at every start, as the emulator starts empty"
        if own_database
        else "SMS_ADAPTER_DATABASE, kept between runs while the emulator starts empty"
    )
    print(
        f"""
sms-adapter dev: adapter + Twilio emulator on {local}
  bot(s):   {settings.bots}
  store:    {describe_database(settings.database)} ({store_note})
  number:   {args.number} (the emulator's number; your bot answers on it)
  server:   {server_stack()}, as `serve` runs
{credentials}

Text your bot from a browser (the dev console):
  {local}/console
Or as a person would, with curl:
  curl -s {local}/_emulator/inbound -d From=+15551234567 -d Body=hello
See the whole exchange (the bot's reply arrives a moment later):
  curl -s {local}/_emulator/messages
Read a conversation back as Twilio keeps it (from another terminal):
  {history_command}
Stop with Ctrl+C.
""",
        flush=True,
    )
    _run(dev.app, host, port, settings)


async def _check_store(settings: Settings) -> None:
    """Open the store once before serving, so a bad SMS_ADAPTER_DATABASE ends with one
    clear line instead of a failed ASGI lifespan and its traceback."""
    from adapter.store.factory import store_for

    try:
        store = store_for(settings.database)
    except ValueError as error:
        raise ConfigError(f"SMS_ADAPTER_DATABASE: {error}") from None
    try:
        await store.open()
    except StoreError as error:
        raise ConfigError(f"SMS_ADAPTER_DATABASE: {error}") from None
    await store.close()


def cmd_serve(args: argparse.Namespace) -> None:
    settings = _load(args, host=args.host, port=args.port)
    if not settings.public_url:
        logger.warning(
            "SMS_ADAPTER_PUBLIC_URL is not set: signatures are checked against the URL rebuilt from "
            "each request, and sends carry no StatusCallback, so delivery statuses come only from "
            "periodic Get Message refreshes"
        )
    channel = build_channel(settings)
    asyncio.run(_check_store(settings))
    app = build_app(settings, channel=channel)
    logger.info("serving on http://%s:%s (bots: %s)", settings.host, settings.port, settings.bots)
    _run(app, settings.host, settings.port, settings)


def cmd_check(args: argparse.Namespace) -> None:
    from adapter.cli.check import Verdict, check_configuration

    # Bots are imported and may log as they load: their lines get redacted like any other.
    # Settings that do not load are reported by the check itself.
    with contextlib.suppress(ConfigError):
        configure_logging(load_settings(os.environ, args.config)[0])
    findings = asyncio.run(
        check_configuration(os.environ, args.config, open_store=_check_store, live=args.live)
    )
    for finding in findings:
        print(finding.line(), flush=True)
    problems = sum(1 for f in findings if f.verdict is Verdict.FAIL)
    print(f"{problems} problem(s) found" if problems else "configuration looks ready", flush=True)
    raise SystemExit(1 if problems else 0)


def cmd_emulator(args: argparse.Namespace) -> None:
    from adapter.devtools.emulator import EmulatorConfig, create_emulator_app, parse_faults

    settings = _load(args)
    try:
        faults = parse_faults(args.faults or "")
    except ValueError as error:
        raise ConfigError(f"--faults: {error}") from None
    config = EmulatorConfig(
        account_sid=settings.account_sid or DEV_ACCOUNT_SID,
        auth_token=settings.auth_token or DEV_AUTH_TOKEN,
        webhook_url=args.webhook_url,
        numbers=args.number or [DEV_NUMBER],
        latency_ms=args.latency_ms,
        faults=faults,
        # The account as the adapter sees it: its API key, its webhook signing key.
        api_keys=(
            {settings.api_key: settings.api_secret}
            if settings.api_key and settings.api_secret
            else {}
        ),
        webhook_shared_key=settings.webhook_shared_key,
        content_templates=_pairs(args.content_template, "--content-template", "HX...=text"),
        applications=_pairs(args.application, "--application", "AP...=status callback URL"),
    )
    print(
        f"Twilio emulator on http://{args.host}:{args.port} (account {config.account_sid}), "
        f"webhooks to {args.webhook_url or 'nowhere (--webhook-url not given)'}",
        flush=True,
    )
    _run(create_emulator_app(config), args.host, args.port, settings)


def _pairs(values: list[str] | None, flag: str, shape: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values or []:
        key, equals, text = value.partition("=")
        if not equals or not key.strip():
            raise ConfigError(f"{flag} {value!r}: expected {shape}")
        pairs[key.strip()] = text
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sms-adapter", description="A self-hosted SMS channel for bots, on Twilio."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser(
        "dev", help="run the adapter with a built-in Twilio emulator (no account needed)"
    )
    dev.add_argument("--host", default=None, help="interface (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=None, help="port (default 8000)")
    dev.add_argument("--config", help="a TOML settings file")
    dev.add_argument(
        "--number", default=DEV_NUMBER, help=f"the emulated Twilio number (default {DEV_NUMBER})"
    )
    dev.set_defaults(func=cmd_dev)

    serve = commands.add_parser(
        "serve", help="run for real against Twilio, configured from the environment"
    )
    serve.add_argument(
        "--host", default=None, help="interface (default SMS_ADAPTER_HOST or 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port (default SMS_ADAPTER_PORT or 8000)"
    )
    serve.add_argument("--config", help="a TOML settings file")
    serve.set_defaults(func=cmd_serve)

    check = commands.add_parser(
        "check", help="check the configuration before going live (exit code 0 or 1)"
    )
    check.add_argument("--config", help="a TOML settings file")
    check.add_argument(
        "--live",
        action="store_true",
        help="also ask Twilio: are the credentials accepted, are the routed numbers ours?",
    )
    check.set_defaults(func=cmd_check)

    emulator = commands.add_parser("emulator", help="run the Twilio emulator alone")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8001)
    emulator.add_argument(
        "--webhook-url", help="where simulated texts are posted (the adapter's /api/sms)"
    )
    emulator.add_argument(
        "--number", action="append", help="an emulated Twilio number (repeatable)"
    )
    emulator.add_argument(
        "--latency-ms", type=int, default=0, help="delay added to every REST answer"
    )
    emulator.add_argument(
        "--faults",
        default="",
        help="fractions of faulty creates, e.g. 429=0.1,500=0.1,drop=0.05,slow=0.05",
    )
    emulator.add_argument(
        "--content-template",
        action="append",
        help="a content template a send may name in ContentSid: HX...='Your code is {{1}}' "
        "(repeatable)",
    )
    emulator.add_argument(
        "--application",
        action="append",
        help="a TwiML App a send may name in ApplicationSid: AP...=its status callback URL "
        "(repeatable)",
    )
    emulator.add_argument("--config", help="a TOML settings file")
    emulator.set_defaults(func=cmd_emulator)
    add_history_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, StoreError) as error:
        print(f"sms-adapter: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
