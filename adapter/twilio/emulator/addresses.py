"""Phone and channel addresses as Twilio writes them: "+15005550006", "whatsapp:+15005550006"."""

from __future__ import annotations

import re

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
WHATSAPP_PREFIX = "whatsapp:"

# Calling code -> ISO country, for the FromCountry/ToCountry webhook fields. Longest code
# first wins; unknown codes give "" as Twilio does when it cannot place a number.
_COUNTRIES = {
    "1": "US",
    "7": "RU",
    "31": "NL",
    "32": "BE",
    "33": "FR",
    "34": "ES",
    "39": "IT",
    "41": "CH",
    "43": "AT",
    "44": "GB",
    "45": "DK",
    "46": "SE",
    "47": "NO",
    "48": "PL",
    "49": "DE",
    "52": "MX",
    "55": "BR",
    "61": "AU",
    "64": "NZ",
    "65": "SG",
    "81": "JP",
    "82": "KR",
    "86": "CN",
    "91": "IN",
    "351": "PT",
    "353": "IE",
    "358": "FI",
    "972": "IL",
}


def is_e164(value: str) -> bool:
    return _E164.fullmatch(value) is not None


def is_address(value: str) -> bool:
    """An E.164 number, or a WhatsApp channel address around one."""
    return is_e164(number_of(value))


def is_whatsapp(address: str) -> bool:
    return address.startswith(WHATSAPP_PREFIX)


def number_of(address: str) -> str:
    """The phone number inside an address ("whatsapp:+1555..." -> "+1555...")."""
    return address.removeprefix(WHATSAPP_PREFIX)


def same_channel(a: str, b: str) -> bool:
    return is_whatsapp(a) == is_whatsapp(b)


def on_channel_of(number: str, address: str) -> str:
    """`number` written on the same channel as `address`."""
    return WHATSAPP_PREFIX + number if is_whatsapp(address) else number


def country_of(address: str) -> str:
    digits = number_of(address).removeprefix("+")
    for length in (3, 2, 1):
        country = _COUNTRIES.get(digits[:length])
        if country is not None:
            return country
    return ""
