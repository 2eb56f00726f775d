"""Tokens for posting to bots in auth mode `jwt`: OAuth 2.0 client credentials.

The adapter, registered as an app of its own (SMS_ADAPTER_BOTFRAMEWORK_APP_ID and
_APP_PASSWORD), asks the token endpoint (SMS_ADAPTER_BOTFRAMEWORK_TOKEN_URL, e.g.
https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token) for a token per scope:
each bot's scope (its app id + /.default), so a token one bot receives is good for that
bot only and cannot be replayed to another. A token is reused until shortly before it
expires; concurrent posts for one scope share one request for a new one; a token a bot
refused (401) is dropped, so the next post gets a new one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

# Renew this long before expiry (a token that expires in flight is refused), or at half
# its life for short-lived tokens, so they are still reused.
RENEW_MARGIN = 300.0
# What the endpoint's expires_in is taken as, whatever it says: a provider answering 0
# must not make every post fetch a token, nor one answering Infinity keep one forever.
MIN_LIFETIME = 60.0
MAX_LIFETIME = 24 * 3600.0
DEFAULT_LIFETIME = 3600.0


class TokenError(Exception):
    """No token could be had; the message names the endpoint's answer, never a secret."""


@dataclass
class _Cached:
    token: str | None = None
    renew_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class TokenSource:
    http: httpx.AsyncClient
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _cache: dict[str, _Cached] = field(default_factory=dict, init=False, repr=False)

    async def token(self, scope: str) -> str:
        """A token for `scope`, cached until shortly before it expires."""
        cached = self._cache.setdefault(scope, _Cached())
        async with cached.lock:
            if cached.token is None or self.clock() >= cached.renew_at:
                token, lifetime = await self._fetch(scope)
                margin = min(RENEW_MARGIN, lifetime / 2)
                cached.token, cached.renew_at = token, self.clock() + lifetime - margin
            return cached.token

    def drop(self, scope: str, token: str) -> None:
        """`token` was refused: the next `token(scope)` fetches a new one (unless another
        post has already replaced it)."""
        cached = self._cache.get(scope)
        if cached is not None and cached.token == token:
            cached.token = None

    async def _fetch(self, scope: str) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scope": scope,
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
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without an access_token")
        return token, token_lifetime(data.get("expires_in"))


def token_lifetime(expires_in: object) -> float:
    """The endpoint's `expires_in` (a number, or a string of one, as some send it) within
    sane bounds; the default if it is missing or not a finite number."""
    if isinstance(expires_in, bool):
        return DEFAULT_LIFETIME
    try:
        seconds = float(expires_in)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_LIFETIME
    if math.isnan(seconds):
        return DEFAULT_LIFETIME
    return min(MAX_LIFETIME, max(MIN_LIFETIME, seconds))
