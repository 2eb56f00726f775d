"""Twilio's Message resource: a stored message as its JSON, and the paths it lives at."""

from __future__ import annotations

from typing import Any

from adapter.devtools.emulator.state import StoredMessage
from adapter.twilio.client import API_VERSION
from adapter.twilio.resources import format_rfc2822


def account_uri(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}"


def message_uri(account_sid: str, sid: str) -> str:
    return f"{account_uri(account_sid)}/Messages/{sid}"


def message_json(message: StoredMessage, account_sid: str) -> dict[str, Any]:
    base = message_uri(account_sid, message.sid)
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": format_rfc2822(message.date_created),
        "date_sent": format_rfc2822(message.date_sent) if message.date_sent else None,
        "date_updated": format_rfc2822(message.date_updated),
        "direction": message.direction,
        "error_code": message.error_code,
        "error_message": message.error_message,
        "from": message.from_,
        "messaging_service_sid": message.messaging_service_sid,
        # Twilio sends counts as strings.
        "num_media": str(len(message.media)),
        "num_segments": str(message.num_segments),
        "price": None,
        "price_unit": "USD",
        "sid": message.sid,
        "status": message.status,
        "subresource_uris": {
            "media": f"{base}/Media.json",
            "feedback": f"{base}/Feedback.json",
        },
        "to": message.to,
        "uri": f"{base}.json",
        # The emulator's addition: the Send Message options the message was created with.
        **message.options,
    }
