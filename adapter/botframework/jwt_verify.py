"""Bearer tokens on connector calls in auth mode `jwt`: signature, issuer, audience, expiry.

The signing keys come from an OpenID configuration document
(SMS_ADAPTER_BOTFRAMEWORK_OPENID_METADATA; its `jwks_uri` names the key set) or straight
from a JWKS URL. Keys are cached; a token signed with a key we do not know makes us fetch
the set again (at most once a minute, so forged key ids cannot make us hammer the
endpoint), as signing keys roll over. The issuer is SMS_ADAPTER_BOTFRAMEWORK_ISSUER, else
the document's `issuer`; the audience is SMS_ADAPTER_BOTFRAMEWORK_AUDIENCE.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx
import jwt

ALGORITHMS = ["RS256"]  # what Microsoft's identity platform signs with
LEEWAY_SECONDS = 300.0  # Bot Framework allows five minutes of clock skew
KEYS_TTL = 24 * 3600.0
REFETCH_AT_MOST_EVERY = 60.0


class InvalidToken(Exception):
    """The request's token is missing or does not check out; the message says why
    (never the token)."""


class KeysUnavailable(Exception):
    """The signing keys cannot be had now, so no token can be checked: our outage, not
    the caller's fault (answered 503, and the bot's SDK may try again)."""


class TokenVerifier:
    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata_url: str,
        audience: str,
        issuers: Sequence[str] = (),
    ) -> None:
        self._http = http
        self._metadata_url = metadata_url
        self._audience = audience
        self._issuers = list(issuers)
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, authorization: str | None) -> dict[str, Any]:
        """The token's claims, if `authorization` ("Bearer <jwt>") checks out."""
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
        key = await self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                audience=self._audience,
                issuer=self._issuers,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"the bearer token was refused: {error}") from None
        return claims

    async def _key(self, key_id: object) -> Any:
        if not isinstance(key_id, str):
            raise InvalidToken("the token names no signing key (kid)")
        async with self._lock:
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at > KEYS_TTL
            unknown = key_id not in self._keys
            may_refetch = self._fetched_at is None or now - self._fetched_at > REFETCH_AT_MOST_EVERY
            if stale or (unknown and may_refetch):
                await self._fetch_keys()
        if key_id not in self._keys:
            raise InvalidToken("the token is signed with a key the OpenID metadata does not list")
        return self._keys[key_id]

    async def _fetch_keys(self) -> None:
        document = await self._get_json(self._metadata_url)
        if "keys" not in document:
            jwks_uri = document.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise KeysUnavailable(
                    "the OpenID metadata has no jwks_uri; tokens cannot be checked"
                )
            if not self._issuers and isinstance(document.get("issuer"), str):
                self._issuers = [document["issuer"]]
            document = await self._get_json(jwks_uri)
        try:
            key_set = jwt.PyJWKSet.from_dict(document)
        except jwt.PyJWTError as error:
            raise KeysUnavailable(f"the signing keys cannot be used: {error}") from None
        self._keys = {key.key_id: key.key for key in key_set.keys if key.key_id}
        self._fetched_at = time.monotonic()
        if not self._issuers:
            raise KeysUnavailable(
                "no issuer to check tokens against: set SMS_ADAPTER_BOTFRAMEWORK_ISSUER"
            )

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise KeysUnavailable(
                f"signing keys unavailable ({type(error).__name__}); tokens cannot be checked"
            ) from None
        if not isinstance(data, dict):
            raise KeysUnavailable("the OpenID metadata is not a JSON object")
        return data


def crypto_available() -> bool:
    """Whether PyJWT can check RSA signatures (it needs the `cryptography` package)."""
    from jwt.algorithms import has_crypto

    return bool(has_crypto)
