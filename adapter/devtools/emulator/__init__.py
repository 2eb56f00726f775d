"""A Twilio account in a box: Send/Fetch/List Messages, signed webhooks and status
callbacks, a simulated person, and injectable faults. See `app.create_emulator_app`."""

from adapter.devtools.emulator.app import create_emulator_app
from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.faults import Fault, Faults, parse_faults
from adapter.devtools.emulator.state import EmulatorState, StoredMessage

__all__ = [
    "EmulatorConfig",
    "EmulatorState",
    "Fault",
    "Faults",
    "StoredMessage",
    "create_emulator_app",
    "parse_faults",
]
