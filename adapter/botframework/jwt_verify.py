"""Bearer tokens on connector calls in auth mode `jwt`, checked as Microsoft's Bot
Framework SDK checks the tokens a channel receives:

- signed with RS256 by a key of the OpenID metadata's key set
  (SMS_ADAPTER_BOTFRAMEWORK_OPENID_METADATA; see `signing_keys`);
- if that key names the channels it endorses (Microsoft's keys do), "sms" among them;
- issuer SMS_ADAPTER_BOTFRAMEWORK_ISSUER, else the metadata's `issuer`;
- audience SMS_ADAPTER_BOTFRAMEWORK_AUDIENCE (the adapter's app id);
- not expired, not before its time, with five minutes of clock skew;
- a caller: the app id in `appid` (v1.0 tokens, or no `ver`) or `azp` (v2.0). A token
  naming neither is refused; whether the caller may speak for a bot is the bridge's
  question (each bot's allowed callers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from adapter.activity import CHANNEL_ID
from adapter.botframework.signing_keys import KeysUnavailable, SigningKeys, UnknownKey

__all__ = ["InvalidToken", "KeysUnavailable", "TokenVerifier", "VerifiedToken", "caller_app_id"]

ALGORITHMS = ["RS256"]  # what Microsoft's identity platform signs with
LEEWAY_SECONDS = 300.0  # Bot Framework allows five minutes of clock skew


class InvalidToken(Exception):
    """The request's token is missing or does not check out; the message says why
    (never the token)."""


@dataclass(frozen=True)
class VerifiedToken:
    caller: str  # the app id the token was issued to
    claims: dict[str, Any]


class TokenVerifier:
    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata_url: str,
        audience: str,
        issuers: Sequence[str] = (),
        *,
        keys: SigningKeys | None = None,
        channel_id: str = CHANNEL_ID,
    ) -> None:
        self._keys = keys if keys is not None else SigningKeys(http, metadata_url)
        self._audience = audience
        self._issuers = list(issuers)
        self._channel_id = channel_id

    async def verify(self, authorization: str | None) -> VerifiedToken:
        """The token's caller and claims, if `authorization` ("Bearer <jwt>") checks out."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("a bearer token is required (Authorization: Bearer ...)")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the bearer token is not a JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken(f"tokens must be signed with {', '.join(ALGORITHMS)}")
        key_id = header.get("kid")
        if not isinstance(key_id, str) or not key_id:
            raise InvalidToken("the token names no signing key (kid)")
        try:
            key = await self._keys.get(key_id)
        except UnknownKey:
            raise InvalidToken(
                "the token is signed with a key the OpenID metadata does not list"
            ) from None
        if key.endorsements is not None and self._channel_id not in key.endorsements:
            # The SDK's EndorsementsValidator: a key Microsoft endorses for some channels
            # only cannot vouch for a call to another channel.
            raise InvalidToken(
                f"the token's signing key is not endorsed for the {self._channel_id!r} channel"
            )
        issuers = self._issuers or ([self._keys.issuer] if self._keys.issuer else [])
        if not issuers:
            raise KeysUnavailable(
                "no issuer to check tokens against: set SMS_ADAPTER_BOTFRAMEWORK_ISSUER"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=issuers,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"the bearer token was refused: {error}") from None
        caller = caller_app_id(claims)
        if caller is None:
            raise InvalidToken(
                "the bearer token names no caller: it needs an appid claim (v1.0 tokens) "
                "or an azp claim (v2.0)"
            )
        return VerifiedToken(caller, claims)

    async def aclose(self) -> None:
        await self._keys.aclose()


def caller_app_id(claims: dict[str, Any]) -> str | None:
    """The app the token was issued to, as the SDK's `get_app_id_from_claims` reads it:
    `appid` for v1.0 tokens (or no `ver`), `azp` for v2.0, nothing for other versions."""
    version = claims.get("ver")
    if version in (None, "", "1.0"):
        app_id = claims.get("appid")
    elif version == "2.0":
        app_id = claims.get("azp")
    else:
        return None
    return app_id if isinstance(app_id, str) and app_id.strip() else None


def crypto_available() -> bool:
    """Whether PyJWT can check RSA signatures (it needs the `cryptography` package)."""
    from jwt.algorithms import has_crypto

    return bool(has_crypto)
