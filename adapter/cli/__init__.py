"""`sms-adapter`: serve, dev, emulator, check, history."""

from adapter.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
