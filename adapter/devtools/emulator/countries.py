"""The country Twilio names in FromCountry/ToCountry for a number."""

from __future__ import annotations

from adapter.twilio.addresses import number_of

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


def country_of(address: str) -> str:
    digits = number_of(address).removeprefix("+")
    for length in (3, 2, 1):
        country = _COUNTRIES.get(digits[:length])
        if country is not None:
            return country
    return ""
