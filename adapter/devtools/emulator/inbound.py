"""A person's text arriving: Twilio's messaging webhook form, posted signed to the adapter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.countries import country_of
from adapter.devtools.emulator.overrides import split_overrides
from adapter.devtools.emulator.signing import Signer, post_signed_form
from adapter.devtools.emulator.state import EmulatorState, StoredMessage
from adapter.twilio.addresses import is_whatsapp, number_of
from adapter.twilio.client import API_VERSION
from adapter.twilio.opt_out import keyword_type

# Twilio retries at once; a short pause keeps a retry loop from spinning on a dead port.
RETRY_PAUSE_SECONDS = 0.05


def inbound_webhook_form(message: StoredMessage, account_sid: str) -> dict[str, str]:
    """The form Twilio posts for an incoming text, in Twilio's field order.

    The emulator knows no geography beyond the country of a calling code, so City, State
    and Zip are blank, as Twilio leaves them when it cannot place a number.
    """
    sender = message.from_ or ""
    form = {
        "ToCountry": country_of(message.to),
        "ToState": "",
        "SmsMessageSid": message.sid,
        "NumMedia": str(len(message.media)),
        "ToCity": "",
        "FromZip": "",
        "SmsSid": message.sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": message.body,
        "FromCountry": country_of(sender),
        "To": message.to,
    }
    if message.messaging_service_sid is not None:
        form["MessagingServiceSid"] = message.messaging_service_sid
    form |= {
        "ToZip": "",
        "NumSegments": str(message.num_segments),
        "MessageSid": message.sid,
        "AccountSid": account_sid,
        "From": sender,
        "ApiVersion": API_VERSION,
    }
    for index, media in enumerate(message.media):
        form[f"MediaContentType{index}"] = media.content_type
        form[f"MediaUrl{index}"] = media.url
    # Twilio flags its opt-out keywords with OptOutType.
    opt_out = keyword_type(message.body)
    if opt_out is not None:
        form["OptOutType"] = str(opt_out)
    if is_whatsapp(sender):
        form["ProfileName"] = message.profile_name or ""
        form["WaId"] = number_of(sender).removeprefix("+")
    return form


@dataclass(frozen=True)
class WebhookOutcome:
    status: int | None  # what the adapter answered last; None if it could not be reached
    error: str | None
    attempts: int = 1
    failure: str | None = field(default=None, compare=False)  # "ct" or "rt", to retry on

    def to_json(self) -> dict[str, object]:
        return {
            "webhook_status": self.status,
            "webhook_error": self.error,
            "webhook_attempts": self.attempts,
        }


async def post_inbound(
    state: EmulatorState, config: EmulatorConfig, signer: Signer, message: StoredMessage
) -> WebhookOutcome:
    """Post the webhook of `message`, retrying as the URL's connection overrides say
    (see `overrides`). The message stays stored as received whatever the outcome, as at
    Twilio: a client can still find it with List Messages."""
    if config.webhook_url is None:
        return WebhookOutcome(None, "no webhook_url configured")
    try:
        url, overrides = split_overrides(config.webhook_url)
    except ValueError as error:
        return WebhookOutcome(None, str(error), attempts=0)
    form = inbound_webhook_form(message, config.account_sid)
    if overrides is None:
        return await _attempt(state, url, form, signer, None)
    timeout = httpx.Timeout(
        overrides.read_timeout, connect=overrides.connect_timeout, pool=overrides.connect_timeout
    )
    loop = asyncio.get_running_loop()
    deadline = None if overrides.total_timeout is None else loop.time() + overrides.total_timeout
    attempts = 0
    while True:
        attempts += 1
        outcome = await _attempt(state, url, form, signer, timeout)
        failure = _failure_kind(outcome)
        out_of_time = deadline is not None and loop.time() >= deadline
        if (
            failure is None
            or attempts > overrides.retries
            or out_of_time
            or not overrides.retries_after(failure)
        ):
            return WebhookOutcome(outcome.status, outcome.error, attempts)
        await asyncio.sleep(RETRY_PAUSE_SECONDS)


async def _attempt(
    state: EmulatorState,
    url: str,
    form: dict[str, str],
    signer: Signer,
    timeout: httpx.Timeout | None,
) -> WebhookOutcome:
    try:
        response = await post_signed_form(state.http_client(), url, form, signer, timeout=timeout)
    except httpx.ConnectError as error:
        return WebhookOutcome(None, _describe(error), failure="ct")
    except httpx.ConnectTimeout as error:
        return WebhookOutcome(None, _describe(error), failure="ct")
    except httpx.TimeoutException as error:
        return WebhookOutcome(None, _describe(error), failure="rt")
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        # Connected, then no answer (a reset, a hang-up): Twilio's read failure.
        return WebhookOutcome(None, _describe(error), failure="rt")
    return WebhookOutcome(response.status_code, None)


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


def _failure_kind(outcome: WebhookOutcome) -> str | None:
    if outcome.failure is not None:
        return outcome.failure
    if outcome.status is not None and 400 <= outcome.status < 500:
        return "4xx"
    if outcome.status is not None and outcome.status >= 500:
        return "5xx"
    return None
