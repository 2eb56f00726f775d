"""Where a bot sends its replies: `serviceUrl` = public URL + `/botframework/{secret}`.

The secret is an HMAC of the bot's endpoint under a key only the adapter knows
(`SMS_ADAPTER_BOTFRAMEWORK_SECRET`, else the Twilio auth token), so it is the same on
every restart and every replica, differs per bot, and cannot be guessed from the URL.
In auth mode `none` it is the only thing that keeps strangers from texting through the
connector, so it carries 192 bits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

PATH_PREFIX = "/botframework"
# Keeps these HMACs apart from any other use of the same key.
_PURPOSE = b"sms-adapter botframework connector path\x00"


def connector_secret(key: str, endpoint_url: str) -> str:
    digest = hmac.new(key.encode(), _PURPOSE + endpoint_url.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def service_url(public_url: str, secret: str) -> str:
    return f"{public_url.rstrip('/')}{PATH_PREFIX}/{secret}"
