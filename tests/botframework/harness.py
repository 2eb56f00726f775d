"""What the stock-bot tests work with: the bot's process and the adapter in front of it."""

from __future__ import annotations

from dataclasses import dataclass

from adapter.cli.dev import DevApp

SECOND_NUMBER = "+15005550007"  # another of our numbers, beside DEV_NUMBER


@dataclass(frozen=True)
class StockBot:
    url: str  # where the bot's aiohttp server listens

    @property
    def endpoint(self) -> str:
        return f"{self.url}/api/messages"


@dataclass(frozen=True)
class Running:
    base: str  # the adapter (and its in-process Twilio emulator)
    dev: DevApp
    bot: StockBot
