"""Store fixtures: each test using `store` runs once per backend in BACKENDS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from adapter.store.base import Store
from adapter.store.sqlite import SQLiteStore

# Makes a new, unopened Store on this test's database (the same one each call).
StoreFactory = Callable[[], Store]
# Closes a store and returns a newly opened one on the same database.
Reopen = Callable[[Store], Awaitable[Store]]


def sqlite_backend(tmp_path: Path) -> StoreFactory:
    path = tmp_path / "store.sqlite3"
    return lambda: SQLiteStore(path)


# The backends the contract suite runs against: a new one is one more line here.
BACKENDS: dict[str, Callable[[Path], StoreFactory]] = {
    "sqlite": sqlite_backend,
}


@pytest.fixture(params=list(BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    return BACKENDS[request.param](tmp_path)


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
