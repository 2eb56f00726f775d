"""Every setting, its default, its validation, in one place.

Settings come from the environment (`TWILIO_*`, `SMS_ADAPTER_*`) or from a TOML file given
with `--config`; the environment wins. A bad value stops start-up with a `ConfigError`
that names the setting. The README's settings table is checked against `SPECS` by a test.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapter.botframework.endpoint import parse_auth_mode
from adapter.config_error import ConfigError
from adapter.durations import parse_duration
from adapter.long_messages import LongMessages, parse_long_messages
from adapter.networks import parse_trusted_proxies
from adapter.ratelimit import parse_rate
from adapter.twilio.client import Credentials

PREFIX = "SMS_ADAPTER_"


def _text(value: str) -> str:
    return value.strip()


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("expected a whole number of at least 1")
    return number


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("expected a number above 0")
    return number


def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("expected an absolute http(s) URL such as https://bot.example.com")
    if parts.query or parts.fragment:
        raise ValueError("expected a URL without a query string or fragment")
    return value


def _checked_by(parse: Callable[[str], object]) -> Callable[[str], str]:
    """A setting kept as text (its default is documented as text) whose value `parse`
    must accept: a typo then fails at load, naming the setting, like any other."""

    def checked(value: str) -> str:
        text = value.strip()
        parse(text)
        return text

    return checked


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("expected one of debug, info, warning, error")
    return level


def _log_format(value: str) -> str:
    chosen = value.strip().lower()
    if chosen not in {"text", "json"}:
        raise ValueError("expected text or json")
    return chosen


@dataclass(frozen=True)
class SettingSpec:
    env: str  # the environment variable
    attribute: str  # the Settings attribute, also the key in a TOML file
    parse: Callable[[str], Any]
    meaning: str
    default_text: str  # the default as documented
    secret: bool = False


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "TWILIO_ACCOUNT_SID",
        "account_sid",
        _text,
        "Twilio account SID (AC...).",
        "none (dev: a fixed test value)",
    ),
    SettingSpec(
        "TWILIO_AUTH_TOKEN",
        "auth_token",
        _text,
        "Auth token: signs webhooks, authenticates REST calls unless an API key is set.",
        "none (dev: a fixed test value)",
        secret=True,
    ),
    SettingSpec(
        "TWILIO_AUTH_TOKEN_SECONDARY",
        "auth_token_secondary",
        _text,
        "Second token accepted on webhooks while rotating the auth token.",
        "none",
        secret=True,
    ),
    SettingSpec(
        "TWILIO_API_KEY",
        "api_key",
        _text,
        "API key SID (SK...) for REST calls instead of the auth token.",
        "none",
    ),
    SettingSpec(
        "TWILIO_API_SECRET", "api_secret", _text, "The API key's secret.", "none", secret=True
    ),
    SettingSpec(
        PREFIX + "PUBLIC_URL",
        "public_url",
        _url,
        "The URL Twilio reaches us at (https://bot.example.com): signatures are checked against it, status callbacks point at it.",
        "rebuilt from each request",
    ),
    SettingSpec(
        PREFIX + "TRUSTED_PROXIES",
        "trusted_proxies",
        _checked_by(parse_trusted_proxies),
        "Peers whose X-Forwarded-Proto/Host/Port are believed (IPs or CIDRs, comma-separated; * for any).",
        "127.0.0.1,::1",
    ),
    SettingSpec(
        PREFIX + "WEBHOOK_SHARED_KEY",
        "webhook_shared_key",
        _text,
        "Shared key for webhooks signed with HMAC-SHA256.",
        "none",
        secret=True,
    ),
    SettingSpec(
        PREFIX + "VALIDATE_SIGNATURES",
        "validate_signatures",
        _bool,
        "Reject webhooks without a valid Twilio signature. Turning it off logs a warning at start.",
        "true",
    ),
    SettingSpec(
        PREFIX + "BOTS",
        "bots",
        _text,
        "Bot routes: module:attribute, or number=module:attribute pairs with * as the default.",
        "bots.echo:router",
    ),
    SettingSpec(
        PREFIX + "TWILIO_BASE_URL",
        "twilio_base_url",
        _url,
        "Where Twilio's REST API is (the emulator's URL in tests).",
        "https://api.twilio.com",
    ),
    SettingSpec(
        PREFIX + "DATABASE",
        "database",
        _text,
        "The SQLite file holding the queue, outbox and state, or a postgresql:// URL (several replicas share it; ?schema=NAME for a schema of its own).",
        "sms-adapter.sqlite3",
    ),
    SettingSpec(
        PREFIX + "MAX_CONCURRENCY",
        "max_concurrency",
        _positive_int,
        "Most requests in flight to Twilio at once, account-wide.",
        "25",
    ),
    SettingSpec(
        PREFIX + "RATE_LIMIT",
        "rate_limit",
        _checked_by(parse_rate),
        "Most requests to Twilio per window, account-wide (count/window).",
        "1200/60s",
    ),
    SettingSpec(
        PREFIX + "SENDER_MPS",
        "sender_mps",
        _positive_float,
        "Most messages per second from one sender number (1 for a US long code).",
        "no cap",
    ),
    SettingSpec(
        PREFIX + "SEND_MAX_ATTEMPTS",
        "send_max_attempts",
        _positive_int,
        "Attempts before a reply is dead-lettered.",
        "8",
    ),
    SettingSpec(
        PREFIX + "SEND_MAX_AGE",
        "send_max_age",
        _checked_by(parse_duration),
        "Age after which an unsent reply is dead-lettered rather than sent late (90s, 30m, 4h, 1d).",
        "4h",
    ),
    SettingSpec(
        PREFIX + "BOT_CONCURRENCY",
        "bot_concurrency",
        _positive_int,
        "Conversations handled at once (texts within one conversation are always handled one at a time).",
        "32",
    ),
    SettingSpec(
        PREFIX + "STATUS_REFRESH_AFTER",
        "status_refresh_after",
        _checked_by(parse_duration),
        "Ask Twilio (Get Message) for the status of a sent message that has no final status after this long.",
        "10m",
    ),
    SettingSpec(
        PREFIX + "SHUTDOWN_TIMEOUT",
        "shutdown_timeout",
        _positive_float,
        "Seconds to finish in-flight work on SIGTERM before handing it back.",
        "10",
    ),
    # -- SMS in the real world (long messages, opt-out) --
    SettingSpec(
        PREFIX + "LONG_MESSAGES",
        "long_messages",
        parse_long_messages,
        "Replies over 1600 characters: split (into parts sent in order, between words), truncate, or refuse (ctx.reply() raises ReplyTooLong).",
        "split",
    ),
    SettingSpec(
        PREFIX + "OPT_OUT_TO_BOTS",
        "opt_out_to_bots",
        _bool,
        "Pass STOP and START texts on to bots (Twilio answers them itself; HELP always reaches bots).",
        "false",
    ),
    # -- Bot Framework bots (adapter/botframework) --
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_AUTH",
        "botframework_auth",
        parse_auth_mode,
        "Auth with Bot Framework bots, unless their route says: none (no token either way; the secret serviceUrl guards replies) or jwt.",
        "none",
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_SECRET",
        "botframework_secret",
        _text,
        "Key the secret in each bot's serviceUrl is derived from; set it so rotating the auth token does not change serviceUrls.",
        "the Twilio auth token",
        secret=True,
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_TIMEOUT",
        "botframework_timeout",
        _positive_float,
        "Seconds a Bot Framework bot has to take a text (its whole turn) before the post is retried.",
        "30",
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_APP_ID",
        "botframework_app_id",
        _text,
        "jwt: the adapter's app id, the client id of its token requests.",
        "none",
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_APP_PASSWORD",
        "botframework_app_password",
        _text,
        "jwt: the adapter's app password (client secret).",
        "none",
        secret=True,
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_TOKEN_URL",
        "botframework_token_url",
        _url,
        "jwt: the OAuth token endpoint tokens for posting to bots come from (client credentials).",
        "none",
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_SCOPE",
        "botframework_scope",
        _text,
        "jwt: the scope asked for (e.g. the bot's app id + /.default).",
        "https://api.botframework.com/.default",
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_OPENID_METADATA",
        "botframework_openid_metadata",
        _url,
        "jwt: OpenID configuration (or JWKS) URL whose keys sign the tokens bots send to the connector.",
        "none",
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_ISSUER",
        "botframework_issuer",
        _text,
        "jwt: issuers accepted on connector tokens, comma-separated.",
        "the metadata's issuer",
    ),
    SettingSpec(
        PREFIX + "BOTFRAMEWORK_AUDIENCE",
        "botframework_audience",
        _text,
        "jwt: the audience connector tokens must carry.",
        "the app id",
    ),
    SettingSpec(
        PREFIX + "ADMIN_TOKEN",
        "admin_token",
        _text,
        "Bearer token for the operator API (POST /api/messages). Unset: that API is off (404).",
        "none",
        secret=True,
    ),
    SettingSpec(
        PREFIX + "LOG_LEVEL", "log_level", _log_level, "debug, info, warning or error.", "info"
    ),
    SettingSpec(
        PREFIX + "LOG_FORMAT",
        "log_format",
        _log_format,
        "text (one readable line per event) or json (one JSON object per line, for log shippers).",
        "text",
    ),
    SettingSpec(
        PREFIX + "LOG_MASK_NUMBERS",
        "log_mask_numbers",
        _bool,
        "Mask phone numbers in log lines (+1555***4567).",
        "false",
    ),
    SettingSpec(PREFIX + "HOST", "host", _text, "Interface to listen on.", "127.0.0.1"),
    SettingSpec(PREFIX + "PORT", "port", _positive_int, "Port to listen on.", "8000"),
)


@dataclass(frozen=True)
class Settings:
    account_sid: str | None = None
    auth_token: str | None = field(default=None, repr=False)
    auth_token_secondary: str | None = field(default=None, repr=False)
    api_key: str | None = None
    api_secret: str | None = field(default=None, repr=False)
    public_url: str | None = None
    trusted_proxies: str = "127.0.0.1,::1"
    webhook_shared_key: str | None = field(default=None, repr=False)
    validate_signatures: bool = True
    bots: str = "bots.echo:router"
    # Routes from a TOML file's [[routes]] tables; when present they replace `bots`.
    routes: tuple[dict[str, Any], ...] = ()
    twilio_base_url: str = "https://api.twilio.com"
    database: str = "sms-adapter.sqlite3"
    max_concurrency: int = 25
    rate_limit: str = "1200/60s"
    sender_mps: float | None = None
    send_max_attempts: int = 8
    send_max_age: str = "4h"
    bot_concurrency: int = 32
    status_refresh_after: str = "10m"
    shutdown_timeout: float = 10.0
    long_messages: LongMessages = LongMessages.SPLIT
    opt_out_to_bots: bool = False
    botframework_auth: str = "none"
    botframework_secret: str | None = field(default=None, repr=False)
    botframework_timeout: float = 30.0
    botframework_app_id: str | None = None
    botframework_app_password: str | None = field(default=None, repr=False)
    botframework_token_url: str | None = None
    botframework_scope: str = "https://api.botframework.com/.default"
    botframework_openid_metadata: str | None = None
    botframework_issuer: str | None = None
    botframework_audience: str | None = None
    admin_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    log_format: str = "text"
    log_mask_numbers: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    # Not a user setting: dev mode runs the emulator in-process and says so here.
    dev_mode: bool = False

    @property
    def webhook_tokens(self) -> list[str]:
        return [t for t in (self.auth_token, self.auth_token_secondary) if t]

    @property
    def status_callback_url(self) -> str | None:
        return f"{self.public_url}/api/sms/status" if self.public_url else None

    def secrets(self) -> list[str]:
        """Every secret value configured, so log filters and tests can look for them."""
        return [
            value
            for spec in SPECS
            if spec.secret and (value := getattr(self, spec.attribute, None))
        ]

    def require_credentials(self) -> None:
        """`serve` cannot work without an account: name what is missing."""
        if not self.account_sid:
            raise ConfigError(
                "TWILIO_ACCOUNT_SID is not set: the Twilio account SID (AC...) is required"
            )
        if not self.auth_token:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is not set: the auth token is required to check webhook signatures"
            )
        if bool(self.api_key) != bool(self.api_secret):
            raise ConfigError("TWILIO_API_KEY and TWILIO_API_SECRET must be set together")

    def rest_credentials(self) -> Credentials:
        """What REST calls authenticate with: the API key when one is set, else the auth
        token. ConfigError (from `require_credentials`) names what is missing."""
        self.require_credentials()
        assert self.account_sid is not None and self.auth_token is not None
        if self.api_key and self.api_secret:
            return Credentials(self.account_sid, self.api_key, self.api_secret)
        return Credentials(self.account_sid, self.account_sid, self.auth_token)


def _parse_one(spec: SettingSpec, raw: Any, source: str) -> Any:
    text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return spec.parse(text)
    except ValueError as error:
        shown = "" if spec.secret else f" {text!r}"
        raise ConfigError(f"{spec.env}{shown} ({source}) is invalid: {error}") from None


def load_settings(
    environ: Mapping[str, str],
    config_file: str | Path | None = None,
    **overrides: Any,
) -> tuple[Settings, list[str]]:
    """Build Settings from a TOML file, then the environment, then explicit overrides.

    Returns the settings and warnings (unknown `SMS_ADAPTER_*` variables, unknown TOML keys),
    which the caller logs: a typo should not silently do nothing.
    """
    values: dict[str, Any] = {}
    warnings: list[str] = []
    by_attribute = {spec.attribute: spec for spec in SPECS}

    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--config: {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"--config: cannot read {path}: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"--config: {path} is not valid TOML: {error}") from None
        for key, raw in data.items():
            if key == "routes":
                if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
                    raise ConfigError(f"{path}: routes must be an array of tables ([[routes]])")
                values["routes"] = tuple(raw)
            elif key in by_attribute:
                values[key] = _parse_one(by_attribute[key], raw, str(path))
            else:
                warnings.append(f"{path}: unknown setting {key!r} ignored")

    known_env = {spec.env for spec in SPECS}
    for name in environ:
        if name.startswith(PREFIX) and name not in known_env:
            warnings.append(f"unknown setting {name} ignored (a typo?)")
    for spec in SPECS:
        raw = environ.get(spec.env)
        if raw is not None and raw.strip() != "":
            values[spec.attribute] = _parse_one(spec, raw, "environment")

    values.update({k: v for k, v in overrides.items() if v is not None})
    allowed = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in allowed}), warnings
