"""A local identity provider, standing in for Microsoft's: OpenID metadata, a JWKS with
RSA keys made here (and, if asked, an EC key and endorsements), and a client-credentials
token endpoint that issues one token per scope. Each can be made to fail, hang or trickle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers import bound_socket, serve

ISSUER = "https://login.example.com/tenant/v2.0"
AUDIENCE = "adapter-app-id"
KEY_ID = "key-1"
EC_KEY_ID = "ec-key"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = new_key()
OTHER_KEY = new_key()
EC_KEY = ec.generate_private_key(ec.SECP256R1())


@dataclass
class IdentityProvider:
    base: str = ""
    token_requests: list[dict[str, str]] = field(default_factory=list)
    token_status: int = 200
    token_failures_left: int = 0  # answer 503 to this many token requests first
    expires_in: object = 3600
    # "ok", "down" (503), "hang" (answers after 45 s) or "trickle" (a byte every 0.2 s)
    keys_mode: str = "ok"
    keys_requests: int = 0
    publish_ec_key: bool = False
    endorsements: list[str] | None = None

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/openid-configuration"

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"

    def issued(self, scope: str) -> list[str]:
        """The tokens issued for `scope`, in order."""
        return [
            _token_for(scope, index)
            for index, request in enumerate(self.token_requests)
            if request["scope"] == scope and request.get("issued") == "yes"
        ]

    def app(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            return JSONResponse({"issuer": ISSUER, "jwks_uri": f"{self.base}/keys"})

        async def keys(request: Request) -> Response:
            self.keys_requests += 1
            if self.keys_mode == "down":
                return JSONResponse({"error": "unavailable"}, status_code=503)
            if self.keys_mode == "hang":
                for _ in range(450):  # 45 s, unless the client goes away first
                    if await request.is_disconnected():
                        return Response(status_code=499)
                    await asyncio.sleep(0.1)
            if self.keys_mode == "trickle":
                return StreamingResponse(_trickle(), media_type="application/json")
            jwk = RSAAlgorithm.to_jwk(SIGNING_KEY.public_key(), as_dict=True)
            entry: dict[str, Any] = {**jwk, "kid": KEY_ID, "use": "sig"}
            if self.endorsements is not None:
                entry["endorsements"] = self.endorsements
            published = [entry]
            if self.publish_ec_key:
                ec_jwk = ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True)
                published.insert(0, {**ec_jwk, "kid": EC_KEY_ID, "use": "sig"})
            return JSONResponse({"keys": published})

        async def token(request: Request) -> Response:
            form = dict(parse_qsl((await request.body()).decode()))
            self.token_requests.append(form)
            if self.token_failures_left > 0:
                self.token_failures_left -= 1
                return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
            if self.token_status != 200:
                return JSONResponse({"error": "invalid_client"}, status_code=self.token_status)
            form["issued"] = "yes"
            index = len(self.token_requests) - 1
            body = f'{{"access_token": "{_token_for(form["scope"], index)}", '
            body += f'"expires_in": {self.expires_in}}}'
            # Written by hand: NaN and Infinity are what some endpoints really send.
            return Response(body, media_type="application/json")

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", metadata),
                Route("/keys", keys),
                Route("/token", token, methods=["POST"]),
            ]
        )


def _token_for(scope: str, index: int) -> str:
    return f"token-{index}-for-{scope}"


async def _trickle() -> AsyncIterator[bytes]:
    for _ in range(200):  # 40 s at most, so the server always stops
        yield b" "
        await asyncio.sleep(0.2)


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    sock, provider.base = bound_socket()
    async with serve(provider.app(), sock):
        yield provider


def token(
    key: Any = SIGNING_KEY, kid: str = KEY_ID, algorithm: str = "RS256", **claims: Any
) -> str:
    """A connector token as a bot's SDK sends one (v1.0: the caller in `appid`); a claim
    given as None is left out."""
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "ver": "1.0",
        **claims,
    }
    body = {name: value for name, value in body.items() if value is not None}
    signing_key: Any = (
        key if algorithm[:2] in {"RS", "ES"} else "a-shared-secret-of-32-bytes-or-more"
    )
    return jwt.encode(body, signing_key, algorithm=algorithm, headers={"kid": kid})
