"""A stock Bot Framework bot (tests/botframework/stock_bot.py) running as a subprocess
on loopback, and the adapter in dev mode routing every text to it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from adapter.cli.dev import DEV_NUMBER, create_dev_app
from adapter.runtime.settings import Settings
from tests.botframework.harness import SECOND_NUMBER, Running, StockBot
from tests.botframework.identity import idp  # noqa: F401 - the identity provider fixture
from tests.processes import free_port
from tests.servers import bound_socket, serve

STOCK_BOT = Path(__file__).with_name("stock_bot.py")


@pytest.fixture(scope="session")
def stock_bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StockBot]:
    pytest.importorskip(
        "botbuilder.integration.aiohttp",
        reason="Microsoft's Bot Framework SDK is not installed: pip install -e '.[botframework]'",
    )
    port = free_port()
    log_path = tmp_path_factory.mktemp("stock-bot") / "bot.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(STOCK_BOT), str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    bot = StockBot(f"http://127.0.0.1:{port}")
    try:
        _wait_until_listening(bot, process, log_path)
        yield bot
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_listening(bot: StockBot, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30  # importing the SDK is slow on a busy machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the stock bot exited:\n{log.read_text(errors='replace')}")
        try:
            httpx.get(f"{bot.url}/api/seen", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the stock bot did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture
async def running(stock_bot: StockBot, tmp_path: Path) -> AsyncIterator[Running]:
    async with _running(stock_bot, tmp_path, [DEV_NUMBER]) as running:
        yield running


@pytest.fixture
async def running_on_two_numbers(stock_bot: StockBot, tmp_path: Path) -> AsyncIterator[Running]:
    """The stock bot on the default route, the emulator with DEV_NUMBER and SECOND_NUMBER."""
    async with _running(stock_bot, tmp_path, [DEV_NUMBER, SECOND_NUMBER]) as running:
        yield running


@contextlib.asynccontextmanager
async def _running(
    stock_bot: StockBot, tmp_path: Path, numbers: list[str]
) -> AsyncIterator[Running]:
    sock, base = bound_socket()
    settings = Settings(
        database=str(tmp_path / "adapter.sqlite3"), bots=f"botframework+{stock_bot.endpoint}"
    )
    dev = create_dev_app(settings, base, numbers)
    async with serve(dev.app, sock):
        yield Running(base, dev, stock_bot)
