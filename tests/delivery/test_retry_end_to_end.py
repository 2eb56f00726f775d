"""SMS_ADAPTER_SEND_MAX_ATTEMPTS=1, the smallest value the setting accepts, end to end:
the app starts, and a reply Twilio refuses with a 500 is dead-lettered after one try."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from adapter.runtime.settings import load_settings
from adapter.web.app import create_app
from tests.servers import bound_socket, serve, wait_for

ACCOUNT = "AC" + "1" * 32
TOKEN = "max-attempts-auth-token"
ADMIN = "max-attempts-admin-token"


@pytest.fixture
async def failing_twilio() -> AsyncIterator[tuple[str, list[str]]]:
    """A Twilio whose Send Message always answers 500 (retryable); records each POST."""
    posts: list[str] = []

    async def messages(request: Request) -> JSONResponse:
        posts.append((await request.body()).decode())
        return JSONResponse({"code": 20500, "message": "Internal Server Error"}, 500)

    app = Starlette(
        routes=[Route("/2010-04-01/Accounts/{sid}/Messages.json", messages, methods=["POST"])]
    )
    sock, base = bound_socket()
    async with serve(app, sock):
        yield base, posts


async def test_one_attempt_means_a_failed_send_is_dead_lettered_at_once(
    tmp_path: Path, failing_twilio: tuple[str, list[str]]
) -> None:
    twilio_url, posts = failing_twilio
    settings, _ = load_settings(
        {
            "SMS_ADAPTER_SEND_MAX_ATTEMPTS": "1",
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "SMS_ADAPTER_ADMIN_TOKEN": ADMIN,
            "SMS_ADAPTER_PUBLIC_URL": "https://bot.example.com",
            "SMS_ADAPTER_DATABASE": str(tmp_path / "db.sqlite3"),
            "SMS_ADAPTER_BOTS": "tests.recording_bot:router",
            "SMS_ADAPTER_TWILIO_BASE_URL": twilio_url,
        }
    )
    sock, base = bound_socket()
    async with serve(create_app(settings), sock), httpx.AsyncClient(timeout=10) as client:
        form = {
            "MessageSid": "SM" + "e" * 32,
            "AccountSid": ACCOUNT,
            "From": "+15551234567",
            "To": "+15005550006",
            "Body": "hello",
        }
        signature = RequestValidator(TOKEN).compute_signature(
            "https://bot.example.com/api/sms", form
        )
        webhook = await client.post(
            f"{base}/api/sms",
            content=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
            },
        )
        assert webhook.status_code == 200

        async def dead_letters() -> list[dict[str, Any]] | None:
            response = await client.get(
                f"{base}/api/messages/dead", headers={"Authorization": f"Bearer {ADMIN}"}
            )
            messages: list[dict[str, Any]] = response.json()["messages"]
            return messages or None

        [dead] = await wait_for(dead_letters)

    assert (dead["body"], dead["to"], dead["attempts"]) == ("got hello", "+15551234567", 1)
    assert len(posts) == 1
