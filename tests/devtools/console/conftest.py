"""The dev app (adapter + emulator + console) under a real uvicorn on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapter.cli.dev import DevApp, create_dev_app
from adapter.runtime.settings import Settings
from tests.servers import bound_socket, serve


@dataclass
class DevServer:
    base: str
    dev: DevApp


@pytest.fixture
async def dev_server(tmp_path: Path) -> AsyncIterator[DevServer]:
    sock, base = bound_socket()
    dev = create_dev_app(Settings(database=str(tmp_path / "adapter.sqlite3")), base)
    async with serve(dev.app, sock):
        yield DevServer(base, dev)
