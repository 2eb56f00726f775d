"""Auth mode jwt, offline: an identity provider on loopback (OpenID metadata, a JWKS with
an RSA key made here, a client-credentials token endpoint) stands in for Microsoft's."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapter.botframework.jwt_verify import InvalidToken, TokenVerifier
from adapter.botframework.tokens import TokenError, TokenSource
from adapter.cli.dev import create_dev_app
from adapter.runtime.settings import Settings
from tests.botframework.fake_bot import FakeBot
from tests.servers import bound_socket, serve, wait_for

ISSUER = "https://login.example.com/tenant/v2.0"
AUDIENCE = "adapter-app-id"
KEY_ID = "key-1"
PERSON = "+15551234567"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = new_key()
OTHER_KEY = new_key()


@dataclass
class IdentityProvider:
    base: str = ""
    token_requests: list[dict[str, str]] = field(default_factory=list)
    token_status: int = 200

    @property
    def metadata_url(self) -> str:
        return f"{self.base}/.well-known/openid-configuration"

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"

    def app(self) -> Starlette:
        async def metadata(request: Request) -> Response:
            return JSONResponse({"issuer": ISSUER, "jwks_uri": f"{self.base}/keys"})

        async def keys(request: Request) -> Response:
            jwk = RSAAlgorithm.to_jwk(SIGNING_KEY.public_key(), as_dict=True)
            return JSONResponse({"keys": [{**jwk, "kid": KEY_ID, "use": "sig"}]})

        async def token(request: Request) -> Response:
            self.token_requests.append(dict(parse_qsl((await request.body()).decode())))
            if self.token_status != 200:
                return JSONResponse({"error": "invalid_client"}, status_code=self.token_status)
            return JSONResponse({"access_token": "token-for-the-bot", "expires_in": 3600})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", metadata),
                Route("/keys", keys),
                Route("/token", token, methods=["POST"]),
            ]
        )


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    sock, provider.base = bound_socket()
    async with serve(provider.app(), sock):
        yield provider


def token(
    key: rsa.RSAPrivateKey = SIGNING_KEY, kid: str = KEY_ID, algorithm: str = "RS256", **claims: Any
) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600, **claims}
    signing_key: Any = key if algorithm.startswith("RS") else "a-shared-secret-of-32-bytes-or-more"
    return jwt.encode(body, signing_key, algorithm=algorithm, headers={"kid": kid})


async def test_a_token_signed_by_the_published_key_is_accepted(idp: IdentityProvider) -> None:
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(http, idp.metadata_url, AUDIENCE)
        claims = await verifier.verify(f"Bearer {token(appid='the-bot')}")
    assert claims["appid"] == "the-bot"


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "bearer token is required"),
        ("Basic dXNlcjpwYXNz", "bearer token is required"),
        ("Bearer not-a-jwt", "not a JWT"),
        (f"Bearer {token(aud='someone-else')}", "Audience doesn't match"),
        (f"Bearer {token(iss='https://evil.example.com')}", "Invalid issuer"),
        (f"Bearer {token(exp=int(time.time()) - 3600)}", "expired"),
        (f"Bearer {token(key=OTHER_KEY)}", "Signature verification failed"),
        (f"Bearer {token(kid='unknown-key')}", "key the OpenID metadata does not list"),
        (f"Bearer {token(algorithm='HS256')}", "must be signed with RS256"),
    ],
    ids=[
        "missing",
        "basic",
        "garbage",
        "audience",
        "issuer",
        "expired",
        "forged",
        "unknown key",
        "symmetric",
    ],
)
async def test_bad_tokens_are_refused_with_the_reason(
    idp: IdentityProvider, authorization: str | None, reason: str
) -> None:
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(http, idp.metadata_url, AUDIENCE)
        with pytest.raises(InvalidToken, match=reason) as refused:
            await verifier.verify(authorization)
    if authorization and " " in authorization:
        assert authorization.split(" ", 1)[1] not in str(refused.value)


async def test_client_credentials_tokens_are_fetched_once_and_reused(
    idp: IdentityProvider,
) -> None:
    async with httpx.AsyncClient() as http:
        source = TokenSource(http, idp.token_url, "adapter-app-id", "app-password", "bot/.default")
        assert [await source.token(), await source.token()] == ["token-for-the-bot"] * 2
    assert idp.token_requests == [
        {
            "grant_type": "client_credentials",
            "client_id": "adapter-app-id",
            "client_secret": "app-password",
            "scope": "bot/.default",
        }
    ]


async def test_a_refused_token_request_names_the_error_not_the_secret(
    idp: IdentityProvider,
) -> None:
    idp.token_status = 401
    async with httpx.AsyncClient() as http:
        source = TokenSource(http, idp.token_url, "adapter-app-id", "app-password", "s")
        with pytest.raises(TokenError, match="401 \\(invalid_client\\)") as refused:
            await source.token()
    assert "app-password" not in str(refused.value)


async def test_in_jwt_mode_posts_carry_a_token_and_replies_must_too(
    idp: IdentityProvider, tmp_path: Path
) -> None:
    bot = FakeBot()

    async def silent(activity: dict[str, Any]) -> Response:
        return Response(status_code=201)

    bot.behaviour = silent
    async with bot.running() as endpoint:
        sock, base = bound_socket()
        settings = Settings(
            database=str(tmp_path / "adapter.sqlite3"),
            bots=f"botframework+{endpoint}",
            botframework_auth="jwt",
            botframework_app_id=AUDIENCE,
            botframework_app_password="app-password",
            botframework_token_url=idp.token_url,
            botframework_scope="the-bot/.default",
            botframework_openid_metadata=idp.metadata_url,
        )
        dev = create_dev_app(settings, base)
        async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as http:
            await http.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "hi"})
            await wait_for(lambda: bot.activities)
            [activity] = bot.activities
            conversation = quote(PERSON, safe="")
            url = f"{activity['serviceUrl']}/v3/conversations/{conversation}/activities"

            def answer(text: str) -> dict[str, str]:
                return {"type": "message", "text": text}

            # Replies to one person go out in order: had a refused one been sent, it
            # would be the first SMS.
            unsigned = await http.post(url, json=answer("Unsigned reply"))
            forged = await http.post(
                url,
                json=answer("Forged reply"),
                headers={"Authorization": f"Bearer {token(key=OTHER_KEY)}"},
            )
            signed = await http.post(
                url, json=answer("Signed reply"), headers={"Authorization": f"Bearer {token()}"}
            )

            async def sms_bodies() -> list[str]:
                response = await http.get(f"{base}/_emulator/messages", params={"to": PERSON})
                return [m["body"] for m in response.json()]

            await wait_for(sms_bodies)
            bodies = await sms_bodies()

    assert bot.headers[0]["authorization"] == "Bearer token-for-the-bot"
    assert idp.token_requests[0]["scope"] == "the-bot/.default"
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "Unauthorized")
    assert forged.status_code == 401
    assert signed.status_code == 200
    assert bodies == ["Signed reply"]
