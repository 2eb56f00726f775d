"""A Twilio account in a box: Send/Fetch/List Messages, signed webhooks and status
callbacks, a simulated person, and injectable faults. See `app.create_emulator_app`."""

from adapter.twilio.emulator.app import create_emulator_app
from adapter.twilio.emulator.config import EmulatorConfig
from adapter.twilio.emulator.faults import Fault, Faults, parse_faults
from adapter.twilio.emulator.state import EmulatorState, StoredMessage

__all__ = [
    "EmulatorConfig",
    "EmulatorState",
    "Fault",
    "Faults",
    "StoredMessage",
    "create_emulator_app",
    "parse_faults",
]
