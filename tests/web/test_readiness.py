"""/readyz says whether the store takes writes now, not whether the process is up."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from starlette.testclient import TestClient

from adapter.runtime.settings import Settings
from adapter.web.app import create_app

ACCOUNT = "AC" + "1" * 32


def test_readyz_is_503_while_the_store_cannot_take_writes_and_200_again_after(
    tmp_path: Path,
) -> None:
    database = tmp_path / "ready.sqlite3"
    settings = Settings(account_sid=ACCOUNT, auth_token="ready-token", database=str(database))
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json()["ready"] is True
        time.sleep(1.1)  # past the second a verdict is reused for

        # Another process holds the write lock (a backup, a stuck migration, a full disk
        # would fail the same commits): a webhook could not be kept now.
        blocker = sqlite3.connect(database, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            refused = client.get("/readyz")
            assert refused.status_code == 503
            assert "store" in refused.json()["reason"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        # The verdict is reused for a second at most; then the store is asked again.
        time.sleep(1.1)
        assert client.get("/readyz").status_code == 200
