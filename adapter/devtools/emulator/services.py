"""Messaging Services (Twilio's Messaging API v1, on its own host at Twilio; here beside
the rest): Fetch Service and a service's PhoneNumbers list, so `sms-adapter check --live`
can read a service's inbound settings and inbound catch-up can find its numbers.

The emulated services are the configured ones (`EmulatorConfig.messaging_services`).
Each posts its texts to the emulator's webhook URL (`inbound_request_url`), and
`use_inbound_webhook_on_number` is false: the service's settings apply, as Twilio's
defaults have it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.countries import country_of
from adapter.devtools.emulator.errors import not_found
from adapter.devtools.emulator.listing import page_slice, paging
from adapter.devtools.emulator.numbers import CREATED, number_sid

SERVICES_PATH = "/v1/Services"
_CREATED = CREATED.strftime("%Y-%m-%dT%H:%M:%SZ")  # the v1 APIs write ISO 8601 dates


def _members(config: EmulatorConfig, request: Request) -> tuple[str, list[str]]:
    sid = request.path_params["service_sid"]
    members = config.messaging_services.get(sid)
    if members is None:
        raise not_found(request.url.path)
    return sid, members


async def fetch_service(config: EmulatorConfig, request: Request) -> Response:
    sid, _ = _members(config, request)
    url = f"https://messaging.twilio.com{SERVICES_PATH}/{sid}"
    return JSONResponse(
        {
            "account_sid": config.account_sid,
            "sid": sid,
            "friendly_name": f"emulated service {sid[-4:]}",
            "date_created": _CREATED,
            "date_updated": _CREATED,
            "inbound_request_url": config.webhook_url,
            "inbound_method": "POST",
            "fallback_url": None,
            "fallback_method": "POST",
            "status_callback": None,
            "sticky_sender": True,
            "mms_converter": True,
            "smart_encoding": True,
            "scan_message_content": "inherit",
            "fallback_to_long_code": False,
            "area_code_geomatch": True,
            "validity_period": 14400,
            "synchronous_validation": True,
            "usecase": "undeclared",
            "us_app_to_person_registered": False,
            "use_inbound_webhook_on_number": False,
            "url": url,
            "links": {
                "phone_numbers": f"{url}/PhoneNumbers",
                "short_codes": f"{url}/ShortCodes",
                "alpha_senders": f"{url}/AlphaSenders",
            },
        }
    )


async def list_service_numbers(config: EmulatorConfig, request: Request) -> Response:
    sid, members = _members(config, request)
    page, page_size = paging(request.query_params)
    start, shown = page_slice(members, page, page_size)
    base = f"https://messaging.twilio.com{SERVICES_PATH}/{sid}/PhoneNumbers"

    def page_url(index: int) -> str:
        return f"{base}?{urlencode({'PageSize': page_size, 'Page': index})}"

    return JSONResponse(
        {
            "phone_numbers": [_member_json(config, sid, number) for number in shown],
            "meta": {
                "page": page,
                "page_size": page_size,
                "first_page_url": page_url(0),
                "previous_page_url": page_url(page - 1) if page > 0 else None,
                "url": page_url(page),
                "next_page_url": page_url(page + 1) if start + page_size < len(members) else None,
                "key": "phone_numbers",
            },
        }
    )


def _member_json(config: EmulatorConfig, service_sid: str, number: str) -> dict[str, Any]:
    sid = number_sid(number)
    return {
        "sid": sid,
        "account_sid": config.account_sid,
        "service_sid": service_sid,
        "date_created": _CREATED,
        "date_updated": _CREATED,
        "phone_number": number,
        "country_code": country_of(number),
        "capabilities": ["SMS", "MMS"],
        "url": f"https://messaging.twilio.com{SERVICES_PATH}/{service_sid}/PhoneNumbers/{sid}",
    }
