"""The adapter on PostgreSQL when the database goes away and comes back.

While the database is lost, webhooks answer 503 (Twilio retries them) rather than
acknowledge texts that cannot be stored; once it is back the adapter carries on by
itself: no restart, no operator.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from adapter.cli.dev import create_dev_app
from adapter.runtime.settings import Settings
from adapter.store.postgres.schema import quote_identifier
from tests.postgres_db import admin_connection, server_url
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551230000"


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, str]]:
    """A database of this test's own (its URL and name): it is the one taken away."""
    name = f"sms_adapter_outage_{uuid.uuid4().hex[:10]}"
    async with admin_connection() as admin:
        try:
            await admin.execute(f"CREATE DATABASE {quote_identifier(name)}")
        except asyncpg.InsufficientPrivilegeError:
            pytest.skip("the test database's user may not create databases")
    try:
        yield urlunsplit(urlsplit(server_url())._replace(path=f"/{name}")), name
    finally:
        async with admin_connection() as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")


async def text(client: httpx.AsyncClient, base: str, body: str) -> int:
    """A person texts the bot through the emulator; what the adapter answered Twilio."""
    sent = await client.post(f"{base}/_emulator/inbound", data={"From": PERSON, "Body": body})
    sent.raise_for_status()
    status = sent.json()["webhook_status"]
    assert isinstance(status, int)
    return status


async def replies(client: httpx.AsyncClient, base: str) -> list[str]:
    messages = (await client.get(f"{base}/_emulator/messages")).json()
    return [m["body"] for m in messages if m["direction"].startswith("outbound")]


async def test_webhooks_answer_503_while_the_database_is_lost_and_recover_by_themselves(
    database: tuple[str, str],
) -> None:
    url, name = database
    sock, base = bound_socket()
    dev = create_dev_app(Settings(database=url, bots="bots.echo:router"), base)
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=20) as client:
        assert await text(client, base, "before") == 200
        await wait_for(lambda: _has(client, base, "You said: before"))

        async with admin_connection() as admin:
            await admin.execute(f"ALTER DATABASE {quote_identifier(name)} ALLOW_CONNECTIONS false")
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
            try:
                assert await text(client, base, "during") == 503
            finally:
                await admin.execute(
                    f"ALTER DATABASE {quote_identifier(name)} ALLOW_CONNECTIONS true"
                )

        # No restart: the next text is taken and answered.
        assert await text(client, base, "after") == 200
        await wait_for(lambda: _has(client, base, "You said: after"), timeout=20)
        assert "You said: during" not in await replies(client, base)


async def _has(client: httpx.AsyncClient, base: str, reply: str) -> bool:
    return reply in await replies(client, base)


def test_serve_refuses_to_start_on_an_unreachable_database_in_one_line() -> None:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SMS_ADAPTER_", "TWILIO_"))
    } | {
        "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
        "TWILIO_AUTH_TOKEN": "t0ken-xyz",
        "SMS_ADAPTER_DATABASE": "postgresql://sms:db-pass-xyz@127.0.0.1:1/sms",
    }

    result = subprocess.run(
        [sys.executable, "-m", "adapter.cli", "serve", "--port", "1"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert (
        "SMS_ADAPTER_DATABASE: cannot open the PostgreSQL store "
        "postgresql://sms:***@127.0.0.1:1/sms" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "db-pass-xyz" not in result.stderr + result.stdout
