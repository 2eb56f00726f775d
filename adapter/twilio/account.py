"""Reads about the account itself, for `sms-adapter check --live`: does Twilio accept our
credentials (Fetch Account), and is a number ours (the IncomingPhoneNumbers list)?

Built on `TwilioClient`, so the same auth, timeouts and error tree apply, and errors mask
the credentials the same way. Twilio's Account JSON includes the auth token: only the
fields below are kept, and the payload is never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapter.twilio.client import TwilioClient
from adapter.twilio.errors import TwilioTransportError

# Twilio's PhoneNumber filter matches partial numbers, so a page may hold longer numbers
# containing ours; one generous page is plenty to find the exact one.
NUMBER_PAGE_SIZE = 50


@dataclass(frozen=True)
class AccountInfo:
    sid: str
    friendly_name: str
    status: str  # "active", "suspended" or "closed"
    type: str | None  # "Trial" or "Full"


@dataclass(frozen=True)
class IncomingNumber:
    sid: str
    phone_number: str
    sms_capable: bool
    sms_url: str | None  # the Messaging webhook, unless an application handles SMS
    sms_application_sid: str | None


class AccountClient(TwilioClient):
    async def fetch_account(self) -> AccountInfo:
        payload = await self._request("fetch account", "GET", self._account_url(".json"))
        sid, status = payload.get("sid"), payload.get("status")
        if not isinstance(sid, str) or not isinstance(status, str):
            raise TwilioTransportError(
                operation="fetch account",
                detail="an Account without sid or status",
                ambiguous=False,
            )
        return AccountInfo(
            sid=sid,
            friendly_name=_text(payload.get("friendly_name")) or sid,
            status=status,
            type=_text(payload.get("type")),
        )

    async def find_incoming_number(self, phone_number: str) -> IncomingNumber | None:
        """The account's number `phone_number` (E.164), or None if it has no such number."""
        payload = await self._request(
            "list numbers",
            "GET",
            self._account_url("/IncomingPhoneNumbers.json"),
            params={"PhoneNumber": phone_number, "PageSize": str(NUMBER_PAGE_SIZE)},
        )
        records = payload.get("incoming_phone_numbers")
        for record in records if isinstance(records, list) else []:
            if isinstance(record, dict) and record.get("phone_number") == phone_number:
                return _incoming_number(record)
        return None


def _incoming_number(record: dict[str, Any]) -> IncomingNumber:
    capabilities = record.get("capabilities")
    sms = isinstance(capabilities, dict) and capabilities.get("sms") is True
    return IncomingNumber(
        sid=_text(record.get("sid")) or "",
        phone_number=str(record.get("phone_number")),
        sms_capable=sms,
        sms_url=_text(record.get("sms_url")),
        sms_application_sid=_text(record.get("sms_application_sid")),
    )


def _text(value: object) -> str | None:
    """A string field; Twilio sends "" and null alike for "not set"."""
    return value if isinstance(value, str) and value else None
