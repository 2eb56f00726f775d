"""Auth mode jwt, offline: an identity provider on loopback (OpenID metadata, a JWKS with
an RSA key made here, a client-credentials token endpoint) stands in for Microsoft's."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.responses import Response

from adapter.botframework.jwt_verify import InvalidToken, KeysUnavailable, TokenVerifier
from adapter.botframework.signing_keys import SigningKeys
from adapter.botframework.tokens import TokenError, TokenSource
from adapter.cli.dev import create_dev_app
from adapter.runtime.settings import Settings
from tests.botframework.fake_bot import FakeBot
from tests.botframework.identity import (
    AUDIENCE,
    EC_KEY,
    EC_KEY_ID,
    OTHER_KEY,
    IdentityProvider,
    token,
)
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"


async def test_a_token_signed_by_the_published_key_names_its_caller(idp: IdentityProvider) -> None:
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(http, idp.metadata_url, AUDIENCE)
        v1 = await verifier.verify(f"Bearer {token(appid='the-bot')}")
        v2 = await verifier.verify(f"Bearer {token(ver='2.0', azp='the-bot', appid=None)}")
        unversioned = await verifier.verify(f"Bearer {token(ver=None, appid='the-bot')}")
    assert [v1.caller, v2.caller, unversioned.caller] == ["the-bot"] * 3


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "bearer token is required"),
        ("Basic dXNlcjpwYXNz", "bearer token is required"),
        ("Bearer not-a-jwt", "not a JWT"),
        (f"Bearer {token(aud='someone-else', appid='b')}", "Audience doesn't match"),
        (f"Bearer {token(iss='https://evil.example.com', appid='b')}", "Invalid issuer"),
        (f"Bearer {token(exp=int(time.time()) - 3600, appid='b')}", "expired"),
        (f"Bearer {token(key=OTHER_KEY, appid='b')}", "Signature verification failed"),
        (f"Bearer {token(kid='unknown-key', appid='b')}", "key the OpenID metadata does not list"),
        (f"Bearer {token(algorithm='HS256', appid='b')}", "must be signed with RS256"),
        (f"Bearer {token()}", "names no caller"),
        # v2.0 tokens name their caller in azp; an appid there is not the SDK's caller
        (f"Bearer {token(ver='2.0', appid='b')}", "names no caller"),
        (f"Bearer {token(ver='1.0', azp='b')}", "names no caller"),
        (f"Bearer {token(ver='3.0', appid='b', azp='b')}", "names no caller"),
        (f"Bearer {token(appid='')}", "names no caller"),
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
        "no app id",
        "v2 without azp",
        "v1 without appid",
        "unknown version",
        "empty app id",
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


@pytest.mark.parametrize(
    ("endorsements", "accepted"),
    [(None, True), (["msteams", "sms"], True), (["msteams", "webchat"], False), ([], False)],
)
async def test_a_key_endorsed_for_other_channels_only_cannot_sign_for_sms(
    idp: IdentityProvider, endorsements: list[str] | None, accepted: bool
) -> None:
    idp.endorsements = endorsements
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(http, idp.metadata_url, AUDIENCE)
        if accepted:
            assert (await verifier.verify(f"Bearer {token(appid='b')}")).caller == "b"
        else:
            with pytest.raises(InvalidToken, match="not endorsed for the 'sms' channel"):
                await verifier.verify(f"Bearer {token(appid='b')}")


async def test_an_ec_key_in_the_set_is_ignored(idp: IdentityProvider) -> None:
    idp.publish_ec_key = True
    async with httpx.AsyncClient() as http:
        verifier = TokenVerifier(http, idp.metadata_url, AUDIENCE)
        # An RS256 token naming the EC key's id: refused as unknown, not a crash.
        with pytest.raises(InvalidToken, match="does not list"):
            await verifier.verify(f"Bearer {token(kid=EC_KEY_ID, appid='b')}")
        # ES256 is not accepted at all, even signed by the published EC key.
        with pytest.raises(InvalidToken, match="RS256"):
            await verifier.verify(
                f"Bearer {token(key=EC_KEY, kid=EC_KEY_ID, algorithm='ES256', appid='b')}"
            )
        # The set's RSA key still works.
        assert (await verifier.verify(f"Bearer {token(appid='b')}")).caller == "b"


async def test_a_failing_key_endpoint_is_fetched_once_per_backoff_and_logged_once(
    idp: IdentityProvider, caplog: pytest.LogCaptureFixture
) -> None:
    idp.keys_mode = "down"
    caplog.set_level(logging.ERROR, logger="adapter.botframework")
    async with httpx.AsyncClient() as http:
        keys = SigningKeys(http, idp.metadata_url, backoff_first=1.0)
        verifier = TokenVerifier(http, idp.metadata_url, AUDIENCE, keys=keys)
        calls = [verifier.verify(f"Bearer {token(kid=f'kid-{n}', appid='b')}") for n in range(50)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        fetched_during_the_flood = idp.keys_requests
        errors_logged = len(caplog.records)
        # Within the backoff: no fetch at all.
        with pytest.raises(KeysUnavailable):
            await verifier.verify(f"Bearer {token(appid='b')}")
        assert idp.keys_requests == fetched_during_the_flood
        # After it, one more try, which finds the provider back.
        idp.keys_mode = "ok"
        await asyncio.sleep(1.1)
        assert (await verifier.verify(f"Bearer {token(appid='b')}")).caller == "b"

    assert all(isinstance(result, KeysUnavailable) for result in results)
    assert "503" in str(results[0])
    assert fetched_during_the_flood == 1
    assert errors_logged == 1 and "next try in" in caplog.records[0].getMessage()
    assert idp.keys_requests == 2


@pytest.mark.parametrize("mode", ["hang", "trickle"])
async def test_a_slow_key_endpoint_does_not_hold_up_tokens_signed_with_known_keys(
    idp: IdentityProvider, mode: str
) -> None:
    async with httpx.AsyncClient() as http:
        keys = SigningKeys(http, idp.metadata_url, fetch_timeout=2.0, refetch_every=0.0)
        verifier = TokenVerifier(http, idp.metadata_url, AUDIENCE, keys=keys)
        await verifier.verify(f"Bearer {token(appid='b')}")  # the keys are known now
        idp.keys_mode = mode

        started = time.monotonic()
        unknown = asyncio.create_task(verifier.verify(f"Bearer {token(kid='new', appid='b')}"))
        await wait_for(lambda: idp.keys_requests == 2)  # the fetch is under way
        known = await verifier.verify(f"Bearer {token(appid='b')}")
        known_after = time.monotonic() - started
        fetch_still_running = not unknown.done()
        with pytest.raises(KeysUnavailable, match="no complete answer within 2s"):
            await unknown
        unknown_after = time.monotonic() - started

    assert known.caller == "b" and fetch_still_running
    assert known_after < 2.0  # did not wait for the fetch
    assert unknown_after < 10.0  # the provider would have taken 40 s or more


async def test_client_credentials_tokens_are_fetched_once_per_scope_and_reused(
    idp: IdentityProvider,
) -> None:
    async with httpx.AsyncClient() as http:
        source = TokenSource(http, idp.token_url, "adapter-app-id", "app-password")
        one = [await source.token("bot-one/.default") for _ in range(3)]
        two = [await source.token("bot-two/.default") for _ in range(3)]
    assert one == [idp.issued("bot-one/.default")[0]] * 3
    assert two == [idp.issued("bot-two/.default")[0]] * 3
    assert one[0] != two[0]
    assert idp.token_requests == [
        {
            "grant_type": "client_credentials",
            "client_id": "adapter-app-id",
            "client_secret": "app-password",
            "scope": scope,
            "issued": "yes",
        }
        for scope in ("bot-one/.default", "bot-two/.default")
    ]


@pytest.mark.parametrize(
    ("expires_in", "reused_until", "renewed_at"),
    [
        (3600, 3299, 3301),  # five minutes before expiry
        (300, 149, 151),  # short-lived: half its life, not every post
        (0, 29, 31),  # taken as a minute
        ("NaN", 3299, 3301),  # taken as an hour
        ("Infinity", 86099, 86101),  # taken as a day, not forever
        ('"1200"', 899, 901),  # a string of a number
    ],
)
async def test_a_token_is_renewed_before_it_expires_whatever_expires_in_says(
    idp: IdentityProvider, expires_in: object, reused_until: float, renewed_at: float
) -> None:
    idp.expires_in = expires_in
    now = [1000.0]
    async with httpx.AsyncClient() as http:
        source = TokenSource(http, idp.token_url, "a", "p", clock=lambda: now[0])
        first = await source.token("s")
        now[0] += reused_until
        second = await source.token("s")
        now[0] += renewed_at - reused_until
        third = await source.token("s")
    assert first == second != third
    assert len(idp.issued("s")) == 2


async def test_a_refused_token_request_names_the_error_not_the_secret(
    idp: IdentityProvider,
) -> None:
    idp.token_status = 401
    async with httpx.AsyncClient() as http:
        source = TokenSource(http, idp.token_url, "adapter-app-id", "app-password")
        with pytest.raises(TokenError, match="401 \\(invalid_client\\)") as refused:
            await source.token("s")
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
            botframework_bot_app_id="the-bot",
            botframework_openid_metadata=idp.metadata_url,
        )
        dev = create_dev_app(settings, base)
        async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as http:
            await http.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": "hi"})
            await wait_for(lambda: bot.activities)
            [activity] = bot.activities
            conversation = quote(activity["conversation"]["id"], safe="")
            url = f"{activity['serviceUrl']}/v3/conversations/{conversation}/activities"

            def answer(text: str) -> dict[str, str]:
                return {"type": "message", "text": text}

            # Replies to one person go out in order: had a refused one been sent, it
            # would be the first SMS.
            unsigned = await http.post(url, json=answer("Unsigned reply"))
            forged = await http.post(
                url,
                json=answer("Forged reply"),
                headers={"Authorization": f"Bearer {token(key=OTHER_KEY, appid='the-bot')}"},
            )
            signed = await http.post(
                url,
                json=answer("Signed reply"),
                headers={"Authorization": f"Bearer {token(appid='the-bot')}"},
            )

            async def sms_bodies() -> list[str]:
                response = await http.get(f"{base}/_emulator/messages", params={"to": PERSON})
                return [m["body"] for m in response.json()]

            await wait_for(sms_bodies)
            bodies = await sms_bodies()

    assert bot.headers[0]["authorization"] == f"Bearer {idp.issued('the-bot/.default')[0]}"
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "Unauthorized")
    assert forged.status_code == 401
    assert signed.status_code == 200
    assert bodies == ["Signed reply"]
