"""A person's text arriving: Twilio's messaging webhook form, posted signed to the adapter."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.countries import country_of
from adapter.devtools.emulator.signing import Signer, post_signed_form
from adapter.devtools.emulator.state import EmulatorState, StoredMessage
from adapter.twilio.addresses import is_whatsapp, number_of
from adapter.twilio.client import API_VERSION
from adapter.twilio.opt_out import keyword_type


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
    status: int | None  # what the adapter answered; None if it could not be reached
    error: str | None

    def to_json(self) -> dict[str, object]:
        return {"webhook_status": self.status, "webhook_error": self.error}


async def post_inbound(
    state: EmulatorState, config: EmulatorConfig, signer: Signer, message: StoredMessage
) -> WebhookOutcome:
    if config.webhook_url is None:
        return WebhookOutcome(None, "no webhook_url configured")
    form = inbound_webhook_form(message, config.account_sid)
    try:
        response = await post_signed_form(state.http_client(), config.webhook_url, form, signer)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return WebhookOutcome(None, f"{type(error).__name__}: {error}".rstrip(": "))
    return WebhookOutcome(response.status_code, None)
