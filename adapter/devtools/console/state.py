"""What one app's console holds, and how dev mode gives it live updates and a log.

Outside dev mode the console has only what any adapter has: List Messages through the
history service. `install_dev_console` adds what dev mode has besides: the emulator in
the same process (every message it stores or moves to a new status is pushed to the
page) and the exchange log around the whole app.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request

from adapter.devtools.console.conversations import from_emulator
from adapter.devtools.console.exchange_log import ExchangeLog, ExchangeLogMiddleware
from adapter.devtools.console.feed import LiveFeed
from adapter.devtools.emulator.state import EmulatorState, StoredMessage
from adapter.history.service import HistoryService
from adapter.runtime.logging_setup import secret_forms
from adapter.twilio.addresses import is_address

if TYPE_CHECKING:
    from adapter.runtime.channel import Channel

# An event stream ends after this long and the page reconnects at once where it left
# off: uvicorn waits for open responses before it stops, and a stream that never ended
# would hold up every shutdown.
STREAM_SECONDS = 20.0
HEARTBEAT_SECONDS = 10.0
DEFAULT_PERSON = "+15551234567"


@dataclass
class ConsoleState:
    channel: Channel
    numbers: list[str]  # ours, for the page's picker
    feed: LiveFeed = field(default_factory=LiveFeed)
    exchanges: ExchangeLog | None = None
    live: bool = False  # whether messages are pushed as they change
    stream_seconds: float = STREAM_SECONDS
    heartbeat_seconds: float = HEARTBEAT_SECONDS

    @property
    def history(self) -> HistoryService:
        # The channel's own, so bots and the console share its per-conversation locks.
        return self.channel.history


def console_of(request: Request) -> ConsoleState:
    """The app's console, made on first use where dev mode did not install one."""
    app = request.app
    state = getattr(app.state, "console", None)
    if not isinstance(state, ConsoleState):
        channel: Channel = app.state.channel
        numbers = sorted({r.name for r in channel.routes.routes if is_address(r.name)})
        state = ConsoleState(channel=channel, numbers=numbers)
        app.state.console = state
    return state


def install_dev_console(app: Starlette, emulator: EmulatorState, numbers: list[str]) -> None:
    """Give the dev app's console live messages from `emulator` and an exchange log."""
    channel: Channel = app.state.channel
    feed = LiveFeed()
    exchanges = ExchangeLog(
        secret_forms(channel.settings),
        signatures_checked=channel.settings.validate_signatures,
        on_record=lambda exchange: feed.publish("exchange", exchange.summary()),
    )

    def on_message(message: StoredMessage) -> None:
        feed.publish("message", from_emulator(message))

    emulator.add_listener(on_message)
    app.add_middleware(ExchangeLogMiddleware, log=exchanges)
    app.state.console = ConsoleState(
        channel=channel, numbers=list(numbers), feed=feed, exchanges=exchanges, live=True
    )
