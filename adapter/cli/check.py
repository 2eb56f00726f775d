"""`sms-adapter check`: is this configuration ready to go live?

Each check prints one line, `ok`, `warn` or `FAIL`, with what it found or what is wrong;
the command exits 1 if anything failed, else 0. The checks: the settings themselves
(unknown `SMS_ADAPTER_*` names, values that do not parse), the Twilio credentials, each
bot route (the bot imports and is a Router), the public URL (well formed, https unless it
is loopback), signature validation, and the database (the store opens). With `--live`,
Twilio is asked too: does it accept the credentials (Fetch Account), and is each routed
number one of the account's numbers (IncomingPhoneNumbers)?

Nothing a check prints contains a secret: details name settings, never their values, and
every line still goes through the same redaction as the logs.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from adapter.config_error import ConfigError
from adapter.delivery.routes import DEFAULT_KEY, RouteTable
from adapter.logs import Redactor
from adapter.runtime.bot_routes import build_route_table
from adapter.runtime.logging_setup import secret_forms
from adapter.runtime.settings import Settings, load_settings
from adapter.store.base import StoreError
from adapter.twilio.account import AccountClient
from adapter.twilio.addresses import is_account_sid, is_api_key_sid, is_e164
from adapter.twilio.errors import TwilioApiError, TwilioError

LIVE_TIMEOUT = 10.0  # seconds for each request to Twilio

OpenStore = Callable[[Settings], Awaitable[None]]


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Finding:
    subject: str  # what was checked: "credentials", "route +15550001111", ...
    verdict: Verdict
    detail: str

    def line(self) -> str:
        return f"{self.verdict.value:<4} {self.subject}: {self.detail}"


def ok(subject: str, detail: str) -> Finding:
    return Finding(subject, Verdict.OK, detail)


def warn(subject: str, detail: str) -> Finding:
    return Finding(subject, Verdict.WARN, detail)


def fail(subject: str, detail: str) -> Finding:
    return Finding(subject, Verdict.FAIL, detail)


async def check_configuration(
    environ: Mapping[str, str],
    config_file: str | Path | None,
    *,
    open_store: OpenStore,
    live: bool = False,
    http: httpx.AsyncClient | None = None,
) -> list[Finding]:
    """Every finding, in the order they are worth reading."""
    try:
        settings, unknown = load_settings(environ, config_file)
    except ConfigError as error:
        # Nothing else can be judged without settings; the error names every bad one.
        return [fail("settings", problem) for problem in error.problems]
    findings = [*check_settings(settings, unknown), check_credentials(settings)]
    routes, route_findings = check_routes(settings)
    findings += route_findings
    findings += [check_public_url(settings), check_signatures(settings)]
    findings.append(await check_database(settings, open_store))
    if live:
        findings += await check_twilio(settings, routes, http)
    redactor = Redactor(secret_forms(settings))
    return [Finding(f.subject, f.verdict, redactor.clean(f.detail)) for f in findings]


def check_settings(settings: Settings, unknown: list[str]) -> list[Finding]:
    # Values that do not parse never get here: `load_settings` refuses them, naming the
    # setting, and `check_configuration` reports that.
    if unknown:
        return [fail("settings", warning) for warning in unknown]
    return [ok("settings", "every value is valid and every name is known")]


def check_credentials(settings: Settings) -> Finding:
    try:
        settings.require_credentials()
    except ConfigError as error:
        return fail("credentials", str(error))
    sid = settings.account_sid or ""
    if not is_account_sid(sid):
        return fail("credentials", "TWILIO_ACCOUNT_SID is not AC followed by 32 hex digits")
    if settings.api_key:
        if not is_api_key_sid(settings.api_key):
            return fail("credentials", "TWILIO_API_KEY is not SK followed by 32 hex digits")
        return ok("credentials", f"account {sid}; REST calls use API key {settings.api_key}")
    return ok("credentials", f"account {sid}; REST calls use the auth token")


def check_routes(settings: Settings) -> tuple[RouteTable | None, list[Finding]]:
    """One finding per route; the table too, when every bot loaded."""
    where = "[[routes]] in the config file" if settings.routes else "SMS_ADAPTER_BOTS"
    try:
        table = build_route_table(settings)
    except ConfigError as error:
        return None, [fail("bots", f"{where}: {error}")]
    findings = []
    for route in table.routes:
        subject = "default route (*)" if route.name == DEFAULT_KEY else f"route {route.name}"
        via = (
            f", replies via Messaging Service {route.send_via_messaging_service}"
            if route.send_via_messaging_service
            else ""
        )
        findings.append(ok(subject, f"{route.bot_name} imports and is a Router{via}"))
    return table, findings


def check_public_url(settings: Settings) -> Finding:
    url = settings.public_url
    if url is None:
        return warn(
            "public URL",
            "SMS_ADAPTER_PUBLIC_URL is not set: signatures are checked against the URL rebuilt "
            "from each request, and sends carry no StatusCallback",
        )
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        return fail("public URL", "SMS_ADAPTER_PUBLIC_URL must not carry credentials")
    if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
        return fail(
            "public URL",
            f"{url} is not https: Twilio must reach the adapter over TLS "
            "(http is only for loopback, while developing)",
        )
    return ok("public URL", f"Twilio posts texts to {url}/api/sms")


def check_signatures(settings: Settings) -> Finding:
    if not settings.validate_signatures:
        return fail(
            "signatures",
            "SMS_ADAPTER_VALIDATE_SIGNATURES is off: anyone can post texts to this adapter",
        )
    accepted = ["the auth token"]
    if settings.auth_token_secondary:
        accepted.append("the secondary token")
    if settings.webhook_shared_key:
        accepted.append("the HMAC-SHA256 shared key")
    return ok("signatures", f"checked on every webhook ({', '.join(accepted)})")


async def check_database(settings: Settings, open_store: OpenStore) -> Finding:
    shown = _without_password(settings.database)
    try:
        await open_store(settings)
    except (ConfigError, StoreError) as error:
        return fail("database", str(error))
    return ok("database", f"{shown} opens")


async def check_twilio(
    settings: Settings, routes: RouteTable | None, http: httpx.AsyncClient | None
) -> list[Finding]:
    try:
        credentials = settings.rest_credentials()
    except ConfigError as error:
        return [fail("Twilio", f"not asked: {error}")]
    twilio = AccountClient(credentials, settings.twilio_base_url, http=http, timeout=LIVE_TIMEOUT)
    try:
        try:
            account = await twilio.fetch_account()
        except TwilioError as error:
            return [fail("Twilio account", _refusal(error, settings.twilio_base_url))]
        if account.status != "active":
            return [fail("Twilio account", f"{account.sid} is {account.status}, not active")]
        findings = [
            ok(
                "Twilio account",
                f"{account.sid} ({account.friendly_name}, {account.type or 'type unknown'}) "
                "accepts the credentials",
            )
        ]
        for route in routes.routes if routes is not None else ():
            if route.name != DEFAULT_KEY:  # the default has no number of its own
                findings.append(await _check_number(twilio, route.name, settings))
        return findings
    finally:
        await twilio.aclose()


async def _check_number(twilio: AccountClient, key: str, settings: Settings) -> Finding:
    subject = f"number {key}"
    if not is_e164(key):
        return warn(subject, "not looked up: only phone numbers are listed by IncomingPhoneNumbers")
    try:
        number = await twilio.find_incoming_number(key)
    except TwilioError as error:
        return fail(subject, _refusal(error, settings.twilio_base_url))
    if number is None:
        return fail(subject, f"is not a number of account {settings.account_sid}")
    if not number.sms_capable:
        return fail(subject, f"{number.sid} cannot receive SMS")
    expected = f"{settings.public_url}/api/sms" if settings.public_url else None
    if (
        expected is not None
        and number.sms_application_sid is None
        and number.sms_url is not None
        and number.sms_url != expected
    ):
        return warn(
            subject,
            f"{number.sid} posts texts to {_without_password(number.sms_url)}, not {expected} "
            "(fine if a Messaging Service or a proxy forwards them)",
        )
    return ok(subject, f"{number.sid} is on the account and receives SMS")


def _refusal(error: TwilioError, base_url: str) -> str:
    if isinstance(error, TwilioApiError) and error.status == 401:
        return f"Twilio refused the credentials ({error})"
    return str(error) if isinstance(error, TwilioApiError) else f"cannot reach {base_url}: {error}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without_password(location: str) -> str:
    """A database path or URL, or a webhook URL, without the password it may carry."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


__all__ = ["Finding", "Verdict", "check_configuration"]
