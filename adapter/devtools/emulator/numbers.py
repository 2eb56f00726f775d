"""The emulated account itself (Fetch Account) and its phone numbers (the
IncomingPhoneNumbers list), so `sms-adapter check --live` runs against the emulator.

The numbers are the configured ones, each SMS- and MMS-capable, with the emulator's
webhook URL as its Messaging URL. `PhoneNumber` filters as Twilio's does: a partial
number matches every number containing it, `*` stands for any one digit.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.listing import numbered_page, paging
from adapter.devtools.emulator.resource import account_uri
from adapter.twilio.client import API_VERSION
from adapter.twilio.resources import format_rfc2822

# The emulated account and its numbers have always existed, as far as anyone can tell.
CREATED = datetime(2024, 1, 1, tzinfo=UTC)
FRIENDLY_NAME = "sms-adapter emulator"
_NANP = re.compile(r"\+1(\d{3})(\d{3})(\d{4})")


async def fetch_account(config: EmulatorConfig, request: Request) -> Response:
    # Twilio's answer also carries the account's auth_token; nothing here needs it back.
    created = format_rfc2822(CREATED)
    uri = account_uri(config.account_sid)
    return JSONResponse(
        {
            "sid": config.account_sid,
            "owner_account_sid": config.account_sid,
            "friendly_name": FRIENDLY_NAME,
            "status": "active",
            "type": "Full",
            "date_created": created,
            "date_updated": created,
            "uri": f"{uri}.json",
            "subresource_uris": {
                "messages": f"{uri}/Messages.json",
                "incoming_phone_numbers": f"{uri}/IncomingPhoneNumbers.json",
            },
        }
    )


async def list_incoming_numbers(config: EmulatorConfig, request: Request) -> Response:
    query = request.query_params
    page, page_size = paging(query)
    filters = [(name, query[name]) for name in ("PhoneNumber", "FriendlyName") if query.get(name)]
    matching = [
        number
        for number in config.numbers
        if _number_matches(number, query.get("PhoneNumber"))
        and (query.get("FriendlyName") or "") in _friendly_name(number)
    ]

    def page_uri(index: int) -> str:
        params = [*filters, ("PageSize", str(page_size)), ("Page", str(index))]
        return f"{account_uri(config.account_sid)}/IncomingPhoneNumbers.json?{urlencode(params)}"

    return JSONResponse(
        numbered_page(
            "incoming_phone_numbers",
            matching,
            page,
            page_size,
            lambda number: _number_json(config, number),
            page_uri,
        )
    )


def _number_matches(number: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    # An unencoded "+" in a query string arrives as a space.
    wanted = pattern.strip().lstrip("+")
    if not wanted or not all(c in "0123456789*" for c in wanted):
        return False
    regex = "".join(r"\d" if c == "*" else c for c in wanted)
    return re.search(regex, number) is not None


def _friendly_name(number: str) -> str:
    match = _NANP.fullmatch(number)
    return f"({match[1]}) {match[2]}-{match[3]}" if match else number


def number_sid(number: str) -> str:
    # Stable across restarts, as a real number's SID is.
    return "PN" + hashlib.sha256(number.encode()).hexdigest()[:32]


def _number_json(config: EmulatorConfig, number: str) -> dict[str, Any]:
    sid = number_sid(number)
    created = format_rfc2822(CREATED)
    return {
        "account_sid": config.account_sid,
        "address_requirements": "none",
        "api_version": API_VERSION,
        "beta": False,
        "capabilities": {"fax": False, "mms": True, "sms": True, "voice": False},
        "date_created": created,
        "date_updated": created,
        "friendly_name": _friendly_name(number),
        "identity_sid": None,
        "origin": "twilio",
        "phone_number": number,
        "sid": sid,
        "sms_application_sid": "",
        "sms_fallback_method": "POST",
        "sms_fallback_url": "",
        "sms_method": "POST",
        "sms_url": config.webhook_url or "",
        "status": "in-use",
        "status_callback": "",
        "status_callback_method": "POST",
        "trunk_sid": None,
        "uri": f"{account_uri(config.account_sid)}/IncomingPhoneNumbers/{sid}.json",
        "voice_application_sid": "",
        "voice_method": "POST",
        "voice_url": "",
    }
