"""Every setting, declared once: its name, type, default, validation and help, in one place.

Settings come from the environment (`TWILIO_*`, `SMS_ADAPTER_*`) or from a TOML file given
with `--config`; the environment wins. Each value is parsed once, at load, into its type
(a `Rate`, a `timedelta`, networks, ...); a bad value stops start-up with a `ConfigError`
that names the setting. A test checks the README's settings table against `SPECS`.
"""

# ruff: noqa: RUF009 - a `setting(...)` default is an immutable value (a Rate, a timedelta, ...)

from __future__ import annotations

import difflib
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from adapter.botframework.endpoint import parse_auth_mode
from adapter.config_error import ConfigError
from adapter.durations import parse_duration
from adapter.long_messages import LongMessages, parse_long_messages
from adapter.networks import Network, parse_trusted_proxies
from adapter.ratelimit import Rate, parse_rate
from adapter.twilio.addresses import is_account_sid
from adapter.twilio.client import Credentials

PREFIX = "SMS_ADAPTER_"

T = TypeVar("T")


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
    expected = ValueError("expected a whole number of at least 1, such as 8")
    try:
        number = int(value)
    except ValueError:
        raise expected from None
    if number < 1:
        raise expected
    return number


def _duration_or_off(value: str) -> timedelta:
    """A duration; "off" (or 0) is none at all."""
    if value.strip().lower() == "off":
        return timedelta(0)
    duration = parse_duration(value)
    if duration < timedelta(0):
        raise ValueError(f"{value!r} is negative")
    return duration


def _positive_duration(value: str) -> timedelta:
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError(f"{value!r} is not a positive duration")
    return duration


def _positive_float(value: str) -> float:
    expected = ValueError("expected a number above 0, such as 1 or 0.5")
    try:
        number = float(value)
    except ValueError:
        raise expected from None
    if not number > 0 or number == float("inf"):
        raise expected
    return number


_APPLICATION_SID = re.compile(r"AP[0-9a-fA-F]{32}")


def _application_sid(value: str) -> str:
    value = value.strip()
    if not _APPLICATION_SID.fullmatch(value):
        raise ValueError("expected a TwiML App SID: AP and 32 hex digits")
    return value


def _account_sid(value: str) -> str:
    value = value.strip()
    if value and not is_account_sid(value):
        raise ValueError(
            "expected AC followed by 32 hex digits, as the Twilio Console shows it "
            "(ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx)"
        )
    return value


def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("expected an absolute http(s) URL such as https://bot.example.com")
    if parts.query or parts.fragment:
        raise ValueError("expected a URL without a query string or fragment")
    return value


def _networks(value: str) -> tuple[Network, ...]:
    return tuple(parse_trusted_proxies(value))


def _account_sids(value: str) -> tuple[str, ...]:
    sids = tuple(sid.strip() for sid in value.split(",") if sid.strip())
    for sid in sids:
        if not is_account_sid(sid):
            raise ValueError(f"{sid!r} is not an account SID (AC followed by 32 hex digits)")
    return sids


def _comma_list(value: str) -> tuple[str, ...]:
    return tuple(issuer.strip() for issuer in value.split(",") if issuer.strip())


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
    """One setting as `setting(...)` declared it on a `Settings` field."""

    env: str  # the environment variable
    attribute: str  # the Settings attribute, also the key in a TOML file
    parse: Callable[[str], Any]  # text (environment, TOML) to the attribute's value
    meaning: str
    default_text: str  # the default as documented
    secret: bool = False


_SPEC = "sms_adapter_setting"  # the key of a field's SettingSpec in its metadata


@overload
def setting(
    env: str,
    parse: Callable[[str], T],
    meaning: str,
    *,
    default: str,
    documented: str | None = None,
    secret: bool = False,
) -> T: ...


@overload
def setting(
    env: str,
    parse: Callable[[str], object],
    meaning: str,
    *,
    default: None = None,
    documented: str = "none",
    secret: bool = False,
) -> None: ...


def setting(
    env: str,
    parse: Callable[[str], Any],
    meaning: str,
    *,
    default: str | None = None,
    documented: str | None = None,
    secret: bool = False,
) -> Any:
    """Declare a setting as a `Settings` field. `default` is written as a user would write
    it and parsed with `parse` (so the field's default is a typed value, and the documented
    default is what it is parsed from); no default means None. `documented` replaces the
    text the README shows as the default; a secret is kept out of repr."""
    shown = documented if documented is not None else default if default is not None else "none"
    spec = SettingSpec(env, "", parse, meaning, shown, secret)  # the field names the attribute
    value = None if default is None else parse(default)
    return field(default=value, repr=not secret, metadata={_SPEC: spec})


@dataclass(frozen=True)
class Settings:
    """The adapter's settings, parsed: each field declared with `setting(...)` is one
    setting (`SPECS` lists them); `routes` and `dev_mode` are not settings a user sets.

    Build it with `load_settings`, or directly with typed values. Directly, a setting whose
    type is not text (a rate, a duration, networks, issuers, a number, a flag, ...) may also
    be given as text, for callers without types (a dict of values, a script): it is parsed
    as the environment's would be, `Settings(rate_limit="10/1s", send_max_age="90s")`, and a
    bad one raises `ConfigError` naming the setting (`SMS_ADAPTER_SEND_MAX_AGE 'soon' is
    invalid: ...`). Text settings are kept as given.
    """

    account_sid: str | None = setting(
        "TWILIO_ACCOUNT_SID",
        _account_sid,
        "Twilio account SID (AC...).",
        documented="none (dev: a fixed test value)",
    )
    subaccounts: tuple[str, ...] = setting(
        "SMS_ADAPTER_SUBACCOUNTS",
        _account_sids,
        "Other account SIDs (AC..., comma-separated) whose webhooks we take, e.g. subaccounts that share our numbers; any other AccountSid gets 403.",
        default="",
        documented="none",
    )
    auth_token: str | None = setting(
        "TWILIO_AUTH_TOKEN",
        _text,
        "Auth token: signs webhooks, authenticates REST calls unless an API key is set.",
        documented="none (dev: a fixed test value)",
        secret=True,
    )
    auth_token_secondary: str | None = setting(
        "TWILIO_AUTH_TOKEN_SECONDARY",
        _text,
        "Second token accepted on webhooks while rotating the auth token.",
        secret=True,
    )
    api_key: str | None = setting(
        "TWILIO_API_KEY", _text, "API key SID (SK...) for REST calls instead of the auth token."
    )
    api_secret: str | None = setting(
        "TWILIO_API_SECRET", _text, "The API key's secret.", secret=True
    )
    public_url: str | None = setting(
        "SMS_ADAPTER_PUBLIC_URL",
        _url,
        "The URL Twilio reaches us at (https://bot.example.com): signatures are checked against it, status callbacks point at it.",
        documented="rebuilt from each request",
    )
    trusted_proxies: tuple[Network, ...] = setting(
        "SMS_ADAPTER_TRUSTED_PROXIES",
        _networks,
        "Peers whose X-Forwarded-Proto/Host/Port are believed (IPs or CIDRs, comma-separated; * for any).",
        default="127.0.0.1,::1",
    )
    webhook_shared_key: str | None = setting(
        "SMS_ADAPTER_WEBHOOK_SHARED_KEY",
        _text,
        "Shared key for webhooks signed with HMAC-SHA256.",
        secret=True,
    )
    validate_signatures: bool = setting(
        "SMS_ADAPTER_VALIDATE_SIGNATURES",
        _bool,
        "Reject webhooks without a valid Twilio signature. Turning it off logs a warning at start.",
        default="true",
    )
    bots: str = setting(
        "SMS_ADAPTER_BOTS",
        _text,
        "Bot routes: module:attribute, or number=module:attribute pairs with * as the default.",
        default="bots.echo:router",
    )
    # Routes from a TOML file's [[routes]] tables; when present they replace `bots`.
    routes: tuple[dict[str, Any], ...] = ()
    twilio_base_url: str = setting(
        "SMS_ADAPTER_TWILIO_BASE_URL",
        _url,
        "Where Twilio's REST API is (the emulator's URL in tests).",
        default="https://api.twilio.com",
    )
    database: str = setting(
        "SMS_ADAPTER_DATABASE",
        _text,
        "The SQLite file holding the queue, outbox and state, or a postgresql:// URL (several replicas share it; ?schema=NAME for a schema of its own).",
        default="sms-adapter.sqlite3",
    )
    max_concurrency: int = setting(
        "SMS_ADAPTER_MAX_CONCURRENCY",
        _positive_int,
        "Most requests in flight to Twilio at once, account-wide.",
        default="25",
    )
    rate_limit: Rate = setting(
        "SMS_ADAPTER_RATE_LIMIT",
        parse_rate,
        "Most requests to Twilio per window, account-wide (count/window).",
        default="1200/60s",
    )
    sender_mps: float | None = setting(
        "SMS_ADAPTER_SENDER_MPS",
        _positive_float,
        "Most messages per second from one sender number (1 for a US long code).",
        documented="no cap",
    )
    send_max_attempts: int = setting(
        "SMS_ADAPTER_SEND_MAX_ATTEMPTS",
        _positive_int,
        "Attempts before a reply is dead-lettered.",
        default="8",
    )
    send_max_age: timedelta = setting(
        "SMS_ADAPTER_SEND_MAX_AGE",
        parse_duration,
        "Age after which an unsent reply is dead-lettered rather than sent late (90s, 30m, 4h, 1d).",
        default="4h",
    )
    status_via_application: str | None = setting(
        "SMS_ADAPTER_STATUS_VIA_APPLICATION",
        _application_sid,
        "A TwiML App SID (AP...): sends carry ApplicationSid instead of StatusCallback, so Twilio posts statuses to that App's status callback URL.",
    )
    bot_concurrency: int = setting(
        "SMS_ADAPTER_BOT_CONCURRENCY",
        _positive_int,
        "Conversations handled at once (texts within one conversation are always handled one at a time).",
        default="32",
    )
    handler_timeout: float = setting(
        "SMS_ADAPTER_HANDLER_TIMEOUT",
        _positive_float,
        "Seconds a bot handler may take for one text: past it, an async handler is cancelled and a sync one abandoned (its replies discarded), and the error handler hears a HandlerTimeout.",
        default="60",
    )
    bot_error_reply: str | None = setting(
        "SMS_ADAPTER_BOT_ERROR_REPLY",
        _text,
        "Reply sent when a handler raises or times out and its bot has no error handler that answers (e.g. Sorry, something went wrong.). Unset: nothing is sent.",
    )
    status_refresh_after: timedelta = setting(
        "SMS_ADAPTER_STATUS_REFRESH_AFTER",
        parse_duration,
        "Ask Twilio (Get Message) for the status of a sent message that has no final status after this long.",
        default="10m",
    )
    catchup_interval: timedelta = setting(
        "SMS_ADAPTER_CATCHUP_INTERVAL",
        _duration_or_off,
        "Inbound catch-up: at start and this often, list the texts Twilio received for our numbers and hand on any whose webhook never reached us (0 or off: never).",
        default="60s",
    )
    retention: timedelta = setting(
        "SMS_ADAPTER_RETENTION",
        _positive_duration,
        "Handled texts, finished replies and their statuses, the history cache and Bot Framework exchange records older than this are deleted in the background; conversation state, opt-outs and pending work are kept.",
        default="30d",
    )
    catchup_max_age: timedelta = setting(
        "SMS_ADAPTER_CATCHUP_MAX_AGE",
        _positive_duration,
        "A text catch-up finds older than this is recorded and counted, not given to bots (unless a Router takes late texts: ctx.late).",
        default="1h",
    )
    shutdown_timeout: float = setting(
        "SMS_ADAPTER_SHUTDOWN_TIMEOUT",
        _positive_float,
        "Seconds to finish in-flight work on SIGTERM before handing it back.",
        default="10",
    )
    # -- SMS in the real world (long messages, opt-out) --
    long_messages: LongMessages = setting(
        "SMS_ADAPTER_LONG_MESSAGES",
        parse_long_messages,
        "Replies over 1600 characters: split (into parts sent in order, between words), truncate, or refuse (ctx.reply() raises ReplyTooLong).",
        default="split",
    )
    opt_out_to_bots: bool = setting(
        "SMS_ADAPTER_OPT_OUT_TO_BOTS",
        _bool,
        "Pass STOP and START texts on to bots (Twilio answers them itself; HELP always reaches bots).",
        default="false",
    )
    # -- Bot Framework bots (adapter/botframework) --
    botframework_auth: str = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_AUTH",
        parse_auth_mode,
        "Auth with Bot Framework bots, unless their route says: none (no token either way; the secret serviceUrl guards replies) or jwt.",
        default="none",
    )
    botframework_secret: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_SECRET",
        _text,
        "Key the secret in each bot's serviceUrl is derived from; set it so rotating the auth token does not change serviceUrls.",
        documented="the auth token",
        secret=True,
    )
    botframework_timeout: float = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_TIMEOUT",
        _positive_float,
        "Seconds a Bot Framework bot has to take a text (its whole turn) before the post is retried.",
        default="30",
    )
    botframework_app_id: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_APP_ID",
        _text,
        "jwt: the adapter's app id, the client id of its token requests.",
    )
    botframework_app_password: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_APP_PASSWORD",
        _text,
        "jwt: the adapter's app password (client secret).",
        secret=True,
    )
    botframework_token_url: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_TOKEN_URL",
        _url,
        "jwt: the OAuth token endpoint tokens for posting to bots come from (client credentials).",
    )
    botframework_bot_app_id: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_BOT_APP_ID",
        _text,
        "jwt: the bot's app id, for routes that do not give bot_app_id: the scope of its tokens and the caller allowed to reply as it.",
    )
    botframework_scope: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_SCOPE",
        _text,
        "jwt: the scope of the tokens posted to bots whose route does not give scope or bot_app_id.",
        documented="the bot's app id + /.default",
    )
    botframework_allowed_callers: tuple[str, ...] = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_ALLOWED_CALLERS",
        _comma_list,
        "jwt: app ids whose tokens may reply as a bot whose route does not give allowed_callers, comma-separated (* for any).",
        default="",
        documented="the bot's app id",
    )
    botframework_openid_metadata: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_OPENID_METADATA",
        _url,
        "jwt: OpenID configuration (or JWKS) URL whose keys sign the tokens bots send to the connector.",
    )
    # Several issuers, comma-separated; the name stays singular, like the variable and key.
    botframework_issuer: tuple[str, ...] = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_ISSUER",
        _comma_list,
        "jwt: issuers accepted on connector tokens, comma-separated.",
        default="",
        documented="the metadata's issuer",
    )
    botframework_audience: str | None = setting(
        "SMS_ADAPTER_BOTFRAMEWORK_AUDIENCE",
        _text,
        "jwt: the audience connector tokens must carry.",
        documented="the app id",
    )
    admin_token: str | None = setting(
        "SMS_ADAPTER_ADMIN_TOKEN",
        _text,
        "Bearer token for the operator API (POST /api/messages). Unset: that API is off (404).",
        secret=True,
    )
    log_level: str = setting(
        "SMS_ADAPTER_LOG_LEVEL", _log_level, "debug, info, warning or error.", default="info"
    )
    log_format: str = setting(
        "SMS_ADAPTER_LOG_FORMAT",
        _log_format,
        "text (one readable line per event) or json (one JSON object per line, for log shippers).",
        default="text",
    )
    log_mask_numbers: bool = setting(
        "SMS_ADAPTER_LOG_MASK_NUMBERS",
        _bool,
        "Mask phone numbers in log lines (+1555***4567).",
        default="false",
    )
    # -- connections (uvicorn, adapter/cli/server.py) --
    header_timeout: timedelta = setting(
        "SMS_ADAPTER_HEADER_TIMEOUT",
        parse_duration,
        "Time a client has to send a request's headers, from its first byte; then 408 and the connection is closed.",
        default="10s",
    )
    body_timeout: timedelta = setting(
        "SMS_ADAPTER_BODY_TIMEOUT",
        parse_duration,
        "Time a client has to send a request's body once its headers are in; then the connection is cut.",
        default="10s",
    )
    keepalive_timeout: timedelta = setting(
        "SMS_ADAPTER_KEEPALIVE_TIMEOUT",
        parse_duration,
        "How long an idle kept-alive connection is held open between requests.",
        default="5s",
    )
    max_connections: int = setting(
        "SMS_ADAPTER_MAX_CONNECTIONS",
        _positive_int,
        "Most client connections open at once; one more closes the one that has waited longest for a request (never one being answered).",
        default="1000",
    )
    host: str = setting("SMS_ADAPTER_HOST", _text, "Interface to listen on.", default="127.0.0.1")
    port: int = setting("SMS_ADAPTER_PORT", _positive_int, "Port to listen on.", default="8000")
    # Not a user setting: dev mode runs the emulator in-process and says so here.
    dev_mode: bool = False

    def __post_init__(self) -> None:
        for spec in SPECS:
            value = getattr(self, spec.attribute)
            if type(value) is str and spec.attribute in _PARSED_FROM_TEXT:
                object.__setattr__(self, spec.attribute, _parse_one(spec, value, None))

    @property
    def webhook_tokens(self) -> list[str]:
        return [t for t in (self.auth_token, self.auth_token_secondary) if t]

    @property
    def status_callback_url(self) -> str | None:
        """The StatusCallback of each send; None when statuses go to a TwiML App's URL
        (SMS_ADAPTER_STATUS_VIA_APPLICATION) or no public URL is known."""
        if self.status_via_application is not None:
            return None
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


# Every setting, in declaration order, read off the fields `setting(...)` made.
SPECS: tuple[SettingSpec, ...] = tuple(
    replace(f.metadata[_SPEC], attribute=f.name) for f in fields(Settings) if _SPEC in f.metadata
)


def _not_text() -> frozenset[str]:
    """The settings whose type is neither `str` nor a union with `str` in it (`str | None`):
    `Settings(...)` parses text given for them."""
    hints = typing.get_type_hints(Settings)

    def admits_text(hint: Any) -> bool:
        if typing.get_origin(hint) in {typing.Union, types.UnionType}:
            return str in typing.get_args(hint)
        return hint is str

    return frozenset(spec.attribute for spec in SPECS if not admits_text(hints[spec.attribute]))


_PARSED_FROM_TEXT = _not_text()


def _parse_one(spec: SettingSpec, raw: Any, source: str | None) -> Any:
    text = str(raw).lower() if isinstance(raw, bool) else str(raw)
    try:
        return spec.parse(text)
    except ValueError as error:
        shown = "" if spec.secret else f" {text!r}"
        where = f" ({source})" if source is not None else ""
        raise ConfigError(f"{spec.env}{shown}{where} is invalid: {error}") from None


def load_settings(
    environ: Mapping[str, str],
    config_file: str | Path | None = None,
    **overrides: Any,
) -> tuple[Settings, list[str]]:
    """Build Settings from a TOML file, then the environment, then explicit overrides.

    Returns the settings and warnings (unknown `SMS_ADAPTER_*` variables, unknown TOML keys,
    each with a "did you mean" when a known name is close), which the caller logs: a typo
    should not silently do nothing. Every bad value is found before anything is refused:
    one ConfigError lists them all (and the warnings with them), so a deployment is fixed
    in one round, not one setting per restart.
    """
    values: dict[str, Any] = {}
    warnings: list[str] = []
    problems: list[str] = []
    by_attribute = {spec.attribute: spec for spec in SPECS}

    def parse_into(spec: SettingSpec, raw: Any, source: str) -> None:
        try:
            values[spec.attribute] = _parse_one(spec, raw, source)
        except ConfigError as error:
            problems.append(str(error))

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
                    problems.append(f"{path}: routes must be an array of tables ([[routes]])")
                else:
                    values["routes"] = tuple(raw)
            elif key in by_attribute:
                parse_into(by_attribute[key], raw, str(path))
            else:
                hint = _did_you_mean(key, [*by_attribute, "routes"])
                warnings.append(f"{path}: unknown setting {key!r} ignored{hint}")

    known_env = {spec.env for spec in SPECS}
    for name in environ:
        if name.startswith(PREFIX) and name not in known_env:
            hint = _did_you_mean(name, known_env) or " (a typo?)"
            warnings.append(f"unknown setting {name} ignored{hint}")
    for spec in SPECS:
        raw = environ.get(spec.env)
        if raw is not None and raw.strip() != "":
            parse_into(spec, raw, "environment")

    public_url = values.get("public_url")
    # Only real Twilio is a worry: an emulator (compose, tests) posts over a private network.
    real_twilio = (
        values.get("twilio_base_url", "https://api.twilio.com") == "https://api.twilio.com"
    )
    if isinstance(public_url, str) and real_twilio and _plain_http_off_this_machine(public_url):
        warnings.append(
            f"SMS_ADAPTER_PUBLIC_URL {public_url} is plain http: Twilio posts texts to it "
            "unencrypted and stops at redirects; use the https:// address your proxy serves"
        )
    if problems:
        raise ConfigError(_all_at_once(problems, warnings), problems=[*problems, *warnings])
    values.update({k: v for k, v in overrides.items() if v is not None})
    allowed = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in allowed}), warnings


def _plain_http_off_this_machine(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    loopback = host in {"localhost", "::1"} or host.startswith("127.")
    return parts.scheme == "http" and not loopback


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the known name closest to `name`, if one is close."""
    # Compared without the prefix they share, which would make any two names look alike.
    by_stem = {candidate.upper().removeprefix(PREFIX): candidate for candidate in known}
    stem = name.upper().removeprefix(PREFIX)
    close = difflib.get_close_matches(stem, list(by_stem), n=1, cutoff=0.75)
    return f" (did you mean {by_stem[close[0]]}?)" if close else ""


def _all_at_once(problems: list[str], warnings: list[str]) -> str:
    if len(problems) == 1 and not warnings:
        return problems[0]
    count = f"{len(problems)} setting{'s' if len(problems) > 1 else ''} cannot be used"
    unknown = f" (and {len(warnings)} more to look at)" if warnings else ""
    lines = [f"{count}{unknown}:"]
    lines += [f"  - {problem}" for problem in problems]
    lines += [f"  - {warning}" for warning in warnings]
    return "\n".join(lines)
