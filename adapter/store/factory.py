"""The store `SMS_ADAPTER_DATABASE` names: a postgresql:// URL, or an SQLite file."""

from __future__ import annotations

from adapter.store.base import Store
from adapter.store.postgres.store import PostgresStore, is_postgres_url, redact
from adapter.store.sqlite import SQLiteStore


def store_for(database: str) -> Store:
    """PostgreSQL for `postgresql://` and `postgres://` URLs, SQLite for anything else
    (a file path). Nothing is opened yet. ValueError for a URL that cannot work; its
    message never holds the URL's password."""
    if is_postgres_url(database):
        return PostgresStore(database)
    return SQLiteStore(database)


def describe_database(database: str) -> str:
    """The setting as it may be printed or logged: without a URL's password."""
    return redact(database) if is_postgres_url(database) else database
