"""`sms-adapter check`: is this configuration ready to go live?

Each check prints one line, `ok`, `warn` or `FAIL`, with what it found or what is wrong;
the command exits 1 if anything failed, else 0. The checks: the settings themselves
(unknown `SMS_ADAPTER_*` names, values that do not parse), the Twilio credentials, each
bot route (the bot imports and is a Router), the public URL (well formed, https unless it
is loopback), signature validation, and the database (the store opens). With `--live`,
Twilio is asked too: does it accept the credentials (Fetch Account), is each routed
number one of the account's numbers (IncomingPhoneNumbers), and does Twilio post each
routed number's or Messaging Service's texts to `SMS_ADAPTER_PUBLIC_URL/api/sms` with
POST (the number's Messaging webhook, its TwiML App's SMS URL, or the service's inbound
settings)? When not, the line says what to change.

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
from adapter.twilio.account import AccountClient, InboundWebhook, same_webhook
from adapter.twilio.addresses import is_account_sid, is_api_key_sid, is_e164, is_service_sid
from adapter.twilio.errors import TwilioApiError, TwilioError

LIVE_TIMEOUT = 10.0  # seconds for each request to Twilio
# A service that leaves inbound settings to its numbers: the first ones are checked.
MAX_SERVICE_NUMBERS = 20

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
        if route.send_defaults.max_price is not None:
            findings.append(
                warn(
                    subject,
                    "[routes.send] max_price is obsolete: Twilio ignores MaxPrice since "
                    "2024-06-03 (it is still passed on)",
                )
            )
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
            if route.name == DEFAULT_KEY:  # the default has no number of its own
                continue
            if is_service_sid(route.name):
                findings += await _check_service(twilio, route.name, settings)
            else:
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
        if number is None:
            return fail(subject, f"is not a number of account {settings.account_sid}")
        if not number.sms_capable:
            return fail(subject, f"{number.sid} cannot receive SMS")
        webhook = await twilio.number_webhook(number)
    except TwilioError as error:
        return fail(subject, _refusal(error, settings.twilio_base_url))
    return _judge_webhook(
        subject, f"{number.sid} is on the account and receives SMS", webhook, settings
    )


async def _check_service(twilio: AccountClient, sid: str, settings: Settings) -> list[Finding]:
    """A routed Messaging Service: its inbound settings, or (when it leaves them to its
    numbers) each number's."""
    subject = f"Messaging Service {sid}"
    try:
        service = await twilio.fetch_messaging_service(sid)
        members = await twilio.list_service_numbers(sid)
    except TwilioError as error:
        return [fail(subject, _refusal(error, settings.twilio_base_url))]
    if not members:
        return [fail(subject, "has no phone numbers: nobody can text it")]
    webhook = twilio.service_webhook(service)
    if webhook is not None:
        found = f"{service.friendly_name}, {len(members)} number(s)"
        return [_judge_webhook(subject, found, webhook, settings)]
    return [
        await _check_number(twilio, number, settings) for number in members[:MAX_SERVICE_NUMBERS]
    ]


def _judge_webhook(
    subject: str, found: str, webhook: InboundWebhook, settings: Settings
) -> Finding:
    """Does Twilio post this number's (or service's) texts to our webhook, with POST?"""
    expected = f"{settings.public_url}/api/sms" if settings.public_url else None
    where = "its Messaging webhook (A message comes in)"
    if webhook.source.startswith("TwiML App"):
        where = f"the SMS Request URL of {webhook.source}"
    elif webhook.source.startswith("Messaging Service"):
        where = f"the Incoming Messages request URL of {webhook.source} (Integration)"
    if webhook.url is None:
        target = expected or "SMS_ADAPTER_PUBLIC_URL/api/sms"
        return fail(
            subject,
            f"{found}, but Twilio posts its texts nowhere: set {where} to {target} (HTTP POST)",
        )
    shown = _without_password(webhook.url)
    if expected is not None and not same_webhook(webhook.url, expected):
        return warn(
            subject,
            f"{found}; Twilio posts its texts to {shown}, not {expected}: set {where} to "
            f"{expected} (fine if a proxy forwards them there; inbound catch-up finds them "
            "either way, up to SMS_ADAPTER_CATCHUP_INTERVAL late)",
        )
    if webhook.method != "POST":
        return fail(
            subject,
            f"{found}; Twilio calls {shown} with HTTP {webhook.method}: set {where} to "
            "HTTP POST (the adapter takes texts by POST only)",
        )
    if expected is None:
        return ok(subject, f"{found}; Twilio posts its texts to {shown} ({webhook.source})")
    return ok(subject, f"{found}; Twilio posts its texts here ({webhook.source})")


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
