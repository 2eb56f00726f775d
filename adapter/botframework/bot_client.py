"""Posting one activity to a bot's messaging endpoint, and what came of it.

    PostOutcome
     ├── Delivered      2xx: the bot took the activity (its turn has run)
     ├── Refused        a 4xx other than 408/429: posting it again would be refused again
     └── Failed         the bot could not be reached, timed out, or answered 408, 429 or
                        5xx: worth another try, unless the bot answered meanwhile

In auth mode `none` no Authorization header is sent at all: a Bot Framework SDK with an
empty app id rejects a request that carries one. In mode `jwt` the header carries a token
from `TokenSource` (client credentials) for the bot's own scope. A bot that answers 401
gets the post once more with a new token: its token may have been revoked or rotated
before it expired, and the text is not lost for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeAlias

import httpx

from adapter.botframework.tokens import TokenError, TokenSource
from adapter.twilio.errors import parse_retry_after

logger = logging.getLogger("adapter.botframework")


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
    # No token could be had, so nothing was posted: an outage of the token endpoint,
    # not of the bot, and no post attempt of the text's was spent.
    no_token: bool = False


PostOutcome: TypeAlias = Delivered | Refused | Failed

_RETRYABLE_4XX = frozenset({408, 429})


class BotClient:
    def __init__(self, http: httpx.AsyncClient, tokens: TokenSource | None = None) -> None:
        self._http = http
        self._tokens = tokens

    async def post(
        self, endpoint_url: str, activity: dict[str, Any], auth: str, scope: str | None = None
    ) -> PostOutcome:
        if auth != "jwt":
            return await self._post(endpoint_url, activity, {})
        if self._tokens is None or scope is None:
            return Failed("auth is jwt but no token endpoint is configured", no_token=True)
        outcome: PostOutcome = Failed("not posted")
        for attempt in (1, 2):
            try:
                token = await self._tokens.token(scope)
            except TokenError as error:
                return Failed(f"no token for the bot: {error}", no_token=True)
            headers = {"Authorization": f"Bearer {token}"}
            outcome = await self._post(endpoint_url, activity, headers)
            if not (isinstance(outcome, Refused) and outcome.status == 401):
                return outcome
            self._tokens.drop(scope, token)
            if attempt == 1:
                logger.info("the bot refused its token (401); posting again with a new one")
        return outcome

    async def _post(
        self, endpoint_url: str, activity: dict[str, Any], headers: dict[str, str]
    ) -> PostOutcome:
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
