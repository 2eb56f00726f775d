"""Posting one activity to a bot's messaging endpoint, and what came of it.

    PostOutcome
     ├── Delivered      2xx: the bot took the activity (its turn has run)
     ├── Refused        a 4xx other than 408/429: posting it again would be refused again
     └── Failed         the bot could not be reached, timed out, or answered 408, 429 or
                        5xx: worth another try, unless the bot answered meanwhile

In auth mode `none` no Authorization header is sent at all: a Bot Framework SDK with an
empty app id rejects a request that carries one. In mode `jwt` the header carries a token
from `TokenSource` (client credentials).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from adapter.botframework.tokens import TokenError, TokenSource
from adapter.twilio.errors import parse_retry_after


@dataclass(frozen=True)
class Delivered:
    status: int


@dataclass(frozen=True)
class Refused:
    status: int
    detail: str


@dataclass(frozen=True)
class Failed:
    reason: str
    retry_after: float | None = None
    # The bot may still be working on it, and answer late.
    timed_out: bool = False


PostOutcome: TypeAlias = Delivered | Refused | Failed

_RETRYABLE_4XX = frozenset({408, 429})


class BotClient:
    def __init__(self, http: httpx.AsyncClient, tokens: TokenSource | None = None) -> None:
        self._http = http
        self._tokens = tokens

    async def post(self, endpoint_url: str, activity: dict[str, Any], auth: str) -> PostOutcome:
        headers: dict[str, str] = {}
        if auth == "jwt":
            if self._tokens is None:
                return Failed("auth is jwt but no token endpoint is configured")
            try:
                headers["Authorization"] = f"Bearer {await self._tokens.token()}"
            except TokenError as error:
                return Failed(f"no token for the bot: {error}")
        try:
            response = await self._http.post(endpoint_url, json=activity, headers=headers)
        except httpx.TimeoutException:
            return Failed("the bot did not answer in time", timed_out=True)
        except httpx.TransportError as error:
            return Failed(f"the bot cannot be reached ({type(error).__name__})")
        status = response.status_code
        if 200 <= status < 300:
            return Delivered(status)
        if 400 <= status < 500 and status not in _RETRYABLE_4XX:
            return Refused(status, _short(response.text))
        return Failed(
            f"the bot answered {status}", parse_retry_after(response.headers.get("Retry-After"))
        )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
