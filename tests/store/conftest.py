"""Store fixtures: each test using `store` runs once per backend in BACKENDS."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from adapter.store.base import Store
from adapter.store.memory import MemoryStore
from adapter.store.postgres.store import PostgresStore
from adapter.store.sqlite import SQLiteStore
from tests.postgres_db import fresh_schema

# Makes a new, unopened Store on this test's database (the same one each call).
StoreFactory = Callable[[], Store]
# Closes a store and returns a newly opened one on the same database.
Reopen = Callable[[Store], Awaitable[Store]]


@contextlib.asynccontextmanager
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    path = tmp_path / "store.sqlite3"
    yield lambda: SQLiteStore(path)


@contextlib.asynccontextmanager
async def postgres_backend(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    # Skips the test when no PostgreSQL answers; a fresh schema otherwise.
    async with fresh_schema("contract") as url:
        yield lambda: PostgresStore(url)


@contextlib.asynccontextmanager
async def memory_backend(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    # A MemoryStore's "database" is the object itself, so the factory hands back the
    # same one each call: `reopen` then closes it and opens it again. Its data outlives
    # close() and open() drops its leases, as a restart of a process does; the
    # durability tests check that much (nothing of it outlives the process, of course).
    same = MemoryStore()
    yield lambda: same


# The backends the contract suite runs against: a new one is one more line here.
BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[StoreFactory]]] = {
    "sqlite": sqlite_backend,
    "postgres": postgres_backend,
    "memory": memory_backend,
}


@pytest.fixture(params=list(BACKENDS))
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    async with BACKENDS[request.param](tmp_path) as factory:
        yield factory


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def reopen(store_factory: StoreFactory) -> AsyncIterator[Reopen]:
    opened: list[Store] = []

    async def close_and_reopen(old: Store) -> Store:
        await old.close()
        new = store_factory()
        await new.open()
        opened.append(new)
        return new

    yield close_and_reopen
    for new in opened:
        await new.close()
