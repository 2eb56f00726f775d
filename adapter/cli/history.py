"""sms-adapter history PERSON [--with OUR_NUMBER] [--limit N] [--json]

Prints a conversation's transcript, synced from Twilio first (everything the first time,
what is new afterwards), with the settings `serve` uses: the same account, the same
store (which caches the history), the same rate limits. While pages arrive, stderr shows
how many so far. A Twilio failure ends with one line naming the call and Twilio's error
code, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from typing import Any, NoReturn, TextIO

from adapter.bot.history import HistoryMessage
from adapter.history.service import SyncProgress, SyncReport, conversation_with
from adapter.runtime.channel import HistoryTools, build_history_tools
from adapter.runtime.logging_setup import configure_logging
from adapter.runtime.settings import load_settings
from adapter.twilio.errors import TwilioError
from adapter.twilio.messages import ConversationKey

logger = logging.getLogger("adapter.cli")

DEFAULT_LIMIT = 50
ARROWS = {"inbound": "←", "outbound": "→"}


class ProgressLine:
    """Pages and messages fetched so far, on stderr: one line rewritten in place on a
    terminal, a line now and then otherwise (a log should not get one per page)."""

    def __init__(self, stream: TextIO, *, every_seconds: float = 0.5) -> None:
        self._stream = stream
        self._live = stream.isatty()
        self._every = every_seconds
        self._last = float("-inf")

    def update(self, progress: SyncProgress) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            return
        self._last = now
        text = (
            f"fetching history: {_count(progress.pages, 'page')}, "
            f"{_count(progress.messages, 'message')} so far"
        )
        if self._live:
            self._stream.write(f"\r\x1b[K{text}")
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self, report: SyncReport) -> None:
        what = (
            f"{report.kind} sync: {_count(report.pages, 'page')}, "
            f"{_count(report.messages, 'message')} fetched in {_count(report.requests, 'request')}"
        )
        self._stream.write(("\r\x1b[K" if self._live else "") + what + "\n")
        self._stream.flush()


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def transcript(key: ConversationKey, messages: list[HistoryMessage]) -> str:
    """The messages as a person reads them: time (UTC), direction, status, text, media."""
    if not messages:
        return f"No messages between {key.ours} and {key.person}.\n"
    width = max(len(m.status or "-") for m in messages)
    lines = [f"{key.ours} ⇄ {key.person}: the latest {len(messages)} messages (UTC)"]
    for message in messages:
        line = (
            f"{message.at:%Y-%m-%d %H:%M:%S}  {ARROWS[message.direction]}  "
            f"{(message.status or '-'):<{width}}  {' ⏎ '.join(message.body.splitlines())}"
        )
        if message.num_media:
            line += f"  [{message.num_media} media]"
        if message.error_code is not None:
            line += f"  (error {message.error_code})"
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


def as_json(key: ConversationKey, messages: list[HistoryMessage], report: SyncReport) -> str:
    data: dict[str, Any] = {
        "with": key.ours,
        "person": key.person,
        "messages": [message.to_json() for message in messages],
        "sync": {"kind": report.kind, "requests": report.requests, "messages": report.messages},
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


async def fetch(
    tools: HistoryTools, key: ConversationKey, limit: int, progress: ProgressLine
) -> tuple[list[HistoryMessage], SyncReport]:
    await tools.store.open()
    try:
        report = await tools.service.sync(key, progress=progress.update)
        progress.finish(report)
        return await tools.service.read(key, limit=limit), report
    finally:
        await tools.aclose()


def cmd_history(args: argparse.Namespace) -> None:
    settings, warnings = load_settings(os.environ, args.config)
    configure_logging(settings)
    # httpx logs each request at INFO: a long history would drown the transcript.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for warning in warnings:
        logger.warning(warning)
    tools = build_history_tools(settings)
    try:
        key = conversation_with(args.person, args.with_, tools.route_keys)
    except ValueError as error:
        _fail(str(error), 2)
    try:
        messages, report = asyncio.run(fetch(tools, key, args.limit, ProgressLine(sys.stderr)))
    except TwilioError as error:
        _fail(str(error), 1)
    sys.stdout.write(as_json(key, messages, report) if args.json else transcript(key, messages))


def _fail(message: str, code: int) -> NoReturn:
    print(f"sms-adapter history: {message}", file=sys.stderr)
    raise SystemExit(code)


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError("expected a whole number of at least 1")
    return int(text)


def add_history_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = commands.add_parser(
        "history", help="print a conversation rebuilt from Twilio (both directions)"
    )
    history.add_argument("person", help="the person's number, +E.164 or whatsapp:+E.164")
    history.add_argument(
        "--with",
        dest="with_",
        help="our number in the conversation (default: the one number the routes name)",
    )
    history.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        help=f"how many of the latest messages to print (default {DEFAULT_LIMIT})",
    )
    history.add_argument("--json", action="store_true", help="print JSON instead of a transcript")
    history.add_argument("--config", help="a TOML settings file")
    history.set_defaults(func=cmd_history)
