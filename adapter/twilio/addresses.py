"""Addresses and SIDs as Twilio writes them; the one definition the whole adapter uses.

- A phone number is E.164: "+", a country code that does not start with 0, and at most
  15 digits in all. E.164 sets no minimum; the shortest numbers in service (some small
  countries) have 7 digits, so fewer is a typo, not a number.
- A channel address is a number, or a number on a channel: "whatsapp:+15005550006".
- SIDs are two letters and 32 hex digits: AC (account), MG (Messaging Service),
  SM/MM (SMS/MMS message), IM (WhatsApp-era inbound message), SK (API key).
"""

from __future__ import annotations

import re

WHATSAPP_PREFIX = "whatsapp:"

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-f]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")

# What a message's SID starts with: SMS, MMS, and inbound messages on newer channels.
MESSAGE_SID_PREFIXES = ("SM", "MM", "IM")


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


def is_account_sid(value: str) -> bool:
    return _ACCOUNT_SID.fullmatch(value) is not None


def is_service_sid(value: str) -> bool:
    return _SERVICE_SID.fullmatch(value) is not None


def is_api_key_sid(value: str) -> bool:
    return _API_KEY_SID.fullmatch(value) is not None
