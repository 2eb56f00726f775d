"""Tokens for posting to a bot in auth mode `jwt`: OAuth 2.0 client credentials.

The adapter, registered as an app of its own (SMS_ADAPTER_BOTFRAMEWORK_APP_ID and
_APP_PASSWORD), asks the token endpoint (SMS_ADAPTER_BOTFRAMEWORK_TOKEN_URL, e.g.
https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token) for a token for
SMS_ADAPTER_BOTFRAMEWORK_SCOPE and sends it as a bearer token. A token is reused until
five minutes before it expires; concurrent posts share one request for a new one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httpx

# Renew this long before expiry: a token that expires in flight is refused.
RENEW_MARGIN = 300.0


class TokenError(Exception):
    """No token could be had; the message names the endpoint's answer, never a secret."""


@dataclass
class TokenSource:
    http: httpx.AsyncClient
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str
    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def token(self) -> str:
        async with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at - RENEW_MARGIN:
                self._token, lifetime = await self._fetch()
                self._expires_at = time.monotonic() + lifetime
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": self.scope,
        }
        try:
            response = await self.http.post(self.token_url, data=form)
        except httpx.HTTPError as error:
            raise TokenError(f"token endpoint unreachable ({type(error).__name__})") from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code != 200 or not isinstance(data, dict):
            code = data.get("error") if isinstance(data, dict) else None
            raise TokenError(
                f"token endpoint answered {response.status_code} ({code or 'no error code'})"
            )
        token, lifetime = data.get("access_token"), data.get("expires_in", 3600)
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without an access_token")
        try:
            seconds = float(lifetime)
        except (TypeError, ValueError):
            seconds = 3600.0
        return token, seconds
