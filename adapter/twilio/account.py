"""Reads about the account itself: does Twilio accept our credentials (Fetch Account), is
a number ours (IncomingPhoneNumbers), and where does Twilio post the texts a number or a
Messaging Service receives (the number's Messaging webhook, its TwiML App's, or the
Messaging Service's inbound settings)? Used by `sms-adapter check --live` and by inbound
catch-up, which must know our numbers.

Built on `TwilioClient`, so the same auth, timeouts and error tree apply, and errors mask
the credentials the same way. Twilio's Account JSON includes the auth token: only the
fields below are kept, and the payload is never logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from adapter.twilio.client import TwilioClient
from adapter.twilio.errors import TwilioTransportError

# Twilio's PhoneNumber filter matches partial numbers, so a page may hold longer numbers
# containing ours; one generous page is plenty to find the exact one.
NUMBER_PAGE_SIZE = 50
# The largest page IncomingPhoneNumbers and a service's PhoneNumbers give.
LIST_PAGE_SIZE = 1000
# Messaging Services live in another API, on another host (the emulator serves both).
TWILIO_API = "https://api.twilio.com"
TWILIO_MESSAGING_API: Final = "https://messaging.twilio.com"


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
    sms_method: str = "POST"


@dataclass(frozen=True)
class InboundWebhook:
    """Where Twilio posts the texts to a number or a Messaging Service, and who says so."""

    url: str | None  # None: nowhere (Twilio keeps the texts and calls no one)
    method: str  # "POST" or "GET"
    source: str  # "its Messaging webhook", "TwiML App AP...", "Messaging Service MG..."


@dataclass(frozen=True)
class MessagingService:
    sid: str
    friendly_name: str
    inbound_request_url: str | None
    inbound_method: str
    # True: each number's own Messaging webhook applies, not the service's.
    use_inbound_webhook_on_number: bool


def same_webhook(configured: str | None, expected: str) -> bool:
    """Whether Twilio's configured URL is `expected`: a connection-override fragment
    (#rc=...) and a trailing slash aside, since Twilio requests the URL without them."""
    if configured is None:
        return False

    def plain(url: str) -> str:
        parts = urlsplit(url.strip())
        return urlunsplit(parts._replace(fragment="", path=parts.path.rstrip("/")))

    return plain(configured) == plain(expected)


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

    async def list_incoming_numbers(self, max_pages: int = 10) -> list[IncomingNumber]:
        """The account's numbers, at most `max_pages` pages of LIST_PAGE_SIZE."""
        url: str | None = self._account_url("/IncomingPhoneNumbers.json")
        params: dict[str, str] | None = {"PageSize": str(LIST_PAGE_SIZE)}
        numbers: list[IncomingNumber] = []
        for _ in range(max_pages):
            if url is None:
                break
            payload = await self._request("list numbers", "GET", url, params=params)
            records = payload.get("incoming_phone_numbers")
            numbers += [
                _incoming_number(record)
                for record in (records if isinstance(records, list) else [])
                if isinstance(record, dict) and isinstance(record.get("phone_number"), str)
            ]
            url, params = self._next_page(payload.get("next_page_uri")), None
        return numbers

    async def number_webhook(self, number: IncomingNumber) -> InboundWebhook:
        """Where Twilio posts texts to `number`: its TwiML App's SMS URL if it has one,
        else its own Messaging webhook. (A Messaging Service it belongs to may override
        both: see `service_webhook`.)"""
        if number.sms_application_sid is None:
            return InboundWebhook(number.sms_url, number.sms_method, "its Messaging webhook")
        sid = number.sms_application_sid
        payload = await self._request(
            "fetch application", "GET", self._account_url(f"/Applications/{quote(sid)}.json")
        )
        return InboundWebhook(
            _text(payload.get("sms_url")),
            _method(payload.get("sms_method")),
            f"TwiML App {sid}",
        )

    async def fetch_messaging_service(self, sid: str) -> MessagingService:
        payload = await self._request(
            "fetch messaging service", "GET", f"{self._messaging_url()}/v1/Services/{quote(sid)}"
        )
        return MessagingService(
            sid=_text(payload.get("sid")) or sid,
            friendly_name=_text(payload.get("friendly_name")) or sid,
            inbound_request_url=_text(payload.get("inbound_request_url")),
            inbound_method=_method(payload.get("inbound_method")),
            use_inbound_webhook_on_number=payload.get("use_inbound_webhook_on_number") is True,
        )

    @staticmethod
    def service_webhook(service: MessagingService) -> InboundWebhook | None:
        """The service's inbound settings, or None when each number's own apply."""
        if service.use_inbound_webhook_on_number:
            return None
        return InboundWebhook(
            service.inbound_request_url,
            service.inbound_method,
            f"Messaging Service {service.sid}",
        )

    async def list_service_numbers(self, sid: str, max_pages: int = 10) -> list[str]:
        """The phone numbers of Messaging Service `sid` (its sender pool)."""
        url: str | None = f"{self._messaging_url()}/v1/Services/{quote(sid)}/PhoneNumbers"
        params: dict[str, str] | None = {"PageSize": str(LIST_PAGE_SIZE)}
        numbers: list[str] = []
        for _ in range(max_pages):
            if url is None:
                break
            payload = await self._request("list service numbers", "GET", url, params=params)
            records = payload.get("phone_numbers")
            numbers += [
                record["phone_number"]
                for record in (records if isinstance(records, list) else [])
                if isinstance(record, dict) and isinstance(record.get("phone_number"), str)
            ]
            meta = payload.get("meta")
            url = self._next_page(meta.get("next_page_url") if isinstance(meta, dict) else None)
            params = None
        return numbers

    def _messaging_url(self) -> str:
        # Real Twilio serves Messaging Services from their own host; anything else (the
        # emulator, a test server) serves every API from the one base URL.
        return TWILIO_MESSAGING_API if self._base_url == TWILIO_API else self._base_url

    def _next_page(self, link: object) -> str | None:
        """The next page, on our own base URL: only the link's path and query are used,
        so credentials never go to a host a response names."""
        if not isinstance(link, str) or not link:
            return None
        parsed = httpx.URL(link)
        base = self._messaging_url() if parsed.host == "messaging.twilio.com" else self._base_url
        return base + parsed.raw_path.decode("ascii")


def _incoming_number(record: dict[str, Any]) -> IncomingNumber:
    capabilities = record.get("capabilities")
    sms = isinstance(capabilities, dict) and capabilities.get("sms") is True
    return IncomingNumber(
        sid=_text(record.get("sid")) or "",
        phone_number=str(record.get("phone_number")),
        sms_capable=sms,
        sms_url=_text(record.get("sms_url")),
        sms_application_sid=_text(record.get("sms_application_sid")),
        sms_method=_method(record.get("sms_method")),
    )


def _method(value: object) -> str:
    # Twilio's default for every inbound webhook is POST.
    return value.upper() if isinstance(value, str) and value else "POST"


def _text(value: object) -> str | None:
    """A string field; Twilio sends "" and null alike for "not set"."""
    return value if isinstance(value, str) and value else None
