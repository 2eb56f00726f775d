"""A PostgreSQL database for tests: a fresh schema per test, or a skip saying why not.

The server is the one `SMS_ADAPTER_TEST_POSTGRES` names (`.ci/run` sets it), else a
local one with trust authentication. Each test works in a schema of its own, dropped
afterwards, so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from adapter.store.postgres.schema import quote_identifier
from adapter.store.postgres.store import redact

URL_VARIABLE = "SMS_ADAPTER_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

_unreachable: dict[str, str | None] = {}


def server_url() -> str:
    return os.environ.get(URL_VARIABLE) or DEFAULT_URL


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


async def skip_unless_reachable(url: str) -> None:
    """Skip the test, once asked and then at once, when nothing answers at `url`."""
    if url not in _unreachable:
        try:
            conn = await asyncpg.connect(url, timeout=3)
        except Exception as error:
            _unreachable[url] = str(error) or type(error).__name__
        else:
            await conn.close()
            _unreachable[url] = None
    reason = _unreachable[url]
    if reason is not None:
        pytest.skip(
            f"PostgreSQL is not reachable at {redact(url)} ({reason}); set {URL_VARIABLE} "
            "to a database where tests may create schemas"
        )


@contextlib.asynccontextmanager
async def fresh_schema(prefix: str = "test") -> AsyncIterator[str]:
    """A URL whose `?schema=` is a new, unique schema; dropped on the way out."""
    url = server_url()
    await skip_unless_reachable(url)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield with_schema(url, schema)
    finally:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_identifier(schema)} CASCADE")
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def admin_connection() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test server, for what a test does behind a store's back."""
    url = server_url()
    await skip_unless_reachable(url)
    conn = await asyncpg.connect(url, timeout=10)
    try:
        yield conn
    finally:
        await conn.close()
