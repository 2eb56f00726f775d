"""Logging for the whole process, configured in one place: one line per event.

`configure_logging(settings)` sends every record (ours, uvicorn's, libraries') through
one handler on the root logger: human-readable text, or one JSON object per line with
`SMS_ADAPTER_LOG_FORMAT=json`. Lines about a message carry its `message_sid` and
`conversation` as fields (`extra=message_fields(...)`), so one grep finds its story.

Before a record is written, `Redactor` replaces every configured secret (and the forms
a secret travels in: URL-encoded, inside a Basic auth header) wherever it appears: the
message, its arguments, the fields, the traceback. Code is written never to log a
secret; this is the last line of defence for what slips through (a bot's exception
quoting its environment, a URL pasted into an error). With
`SMS_ADAPTER_LOG_MASK_NUMBERS=true` it also masks phone numbers: +1555***4567.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

REDACTED = "[redacted]"

# The attributes every LogRecord has; anything else on a record came through `extra=`.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}
# Extras that only repeat the message in another dress (uvicorn's coloured variant).
_IGNORED_EXTRAS = frozenset({"color_message"})

# An E.164 number (optionally percent-encoded, as in a logged query string): the country
# code and area stay readable, the last four digits tell numbers apart, the rest is hidden.
_PHONE_NUMBER = re.compile(r"(\+|%2[Bb])(\d{4})(\d{1,7})(\d{4})(?!\d)")

# Marks the handler this module installs, so configuring twice replaces it.


def message_fields(
    message_sid: str | None = None, conversation: object | None = None, **more: object
) -> dict[str, object]:
    """`extra=` for a log line about a message: its SID and conversation as fields."""
    fields: dict[str, object] = {}
    if message_sid is not None:
        fields["message_sid"] = message_sid
    if conversation is not None:
        fields["conversation"] = str(conversation)
    fields.update({name: value for name, value in more.items() if value is not None})
    return fields


def mask_numbers(text: str) -> str:
    return _PHONE_NUMBER.sub(lambda m: f"{m[1]}{m[2]}***{m[4]}", text)


# Shorter secrets are hidden by name only (the `token` parameter, an Authorization
# header): replacing every occurrence of a three-letter token would mangle ordinary
# words ("ok", "bot") in every line, and a secret that short is guessable anyway.
MIN_SECRET_LENGTH = 8
# Characters a URL carries as they are; any other may arrive %-encoded, in either case.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _in_any_encoding(text: str, *, encode_unreserved: bool = False) -> str:
    """A regex matching `text` as is or with any of its characters %-encoded (upper- or
    lower-case hex, `+` for a space), as a query string or a form may carry it."""

    def escaped(byte: int) -> str:
        return "%" + "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{byte:02X}")

    parts = []
    for char in text:
        if char in _UNRESERVED and not encode_unreserved:
            parts.append(re.escape(char))
            continue
        encoded = "".join(escaped(byte) for byte in char.encode("utf-8"))
        plus = "|\\+" if char == " " else ""
        parts.append(f"(?:{re.escape(char)}|{encoded}{plus})")
    return "".join(parts)


# Parameters that carry a credential, whatever their value: `?token=` (the console's
# links), and the usual names. The name itself may arrive %-encoded (`%74oken`), which a
# server decodes like any other: it is matched in any encoding too.
_SECRET_PARAMETERS = ("token", "access_token", "auth_token", "password", "client_secret")
_PARAMETER = re.compile(
    r"(?i)(?<![A-Za-z0-9_%])((?:"
    + "|".join(_in_any_encoding(name, encode_unreserved=True) for name in _SECRET_PARAMETERS)
    + r")(?:=|%3[Dd]))[^&\s\"'#;,)\]]+"
)
# An Authorization header as code tends to print it: `Authorization: Bearer x`,
# `'authorization': 'Basic x'`, `(b'authorization', b'Bearer x')`.
_AUTHORIZATION = re.compile(
    r"(?i)((?:proxy-)?authorization['\"]?\s*[:=,]\s*(?:(?-i:b)?['\"])?\s*"
    r"(?:(?:bearer|basic|digest|token)\s+)?)[^\s'\",;})\]]+"
)


class Redactor(logging.Filter):
    """Cleans each record in place before any handler formats it: the rendered message
    replaces `msg` and `args`, the traceback is rendered into `exc_text` and cleaned.

    Hidden: the value of a credential parameter and of an Authorization header, by
    name, whatever it is; and every configured secret of at least MIN_SECRET_LENGTH
    characters, in any %-encoding, where it stands alone (not inside a longer word)."""

    def __init__(self, secrets: Iterable[str], *, mask_numbers: bool = False) -> None:
        super().__init__()
        long_enough = sorted(
            {secret for secret in secrets if len(secret) >= MIN_SECRET_LENGTH},
            key=len,
            reverse=True,  # a secret containing another is replaced whole
        )
        self._secrets = (
            re.compile(
                r"(?<![A-Za-z0-9])(?:"
                + "|".join(
                    _in_any_encoding(secret, encode_unreserved=True) for secret in long_enough
                )
                + r")(?![A-Za-z0-9])"
            )
            if long_enough
            else None
        )
        self._mask_numbers = mask_numbers
        self._formatter = logging.Formatter()

    def clean(self, text: str) -> str:
        text = _PARAMETER.sub(lambda m: m[1] + REDACTED, text)
        text = _AUTHORIZATION.sub(lambda m: m[1] + REDACTED, text)
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        return mask_numbers(text) if self._mask_numbers else text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.clean(_rendered_message(record))
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.clean(record.exc_text)
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)
        for name, value in extra_fields(record).items():
            if not isinstance(value, int | float | bool) and value is not None:
                setattr(record, name, self.clean(str(value)))
        return True


class LogThrottle:
    """At most `burst` lines per `interval` seconds about one kind of event; the rest are
    counted, and the next line let through says how many were left out. For events a
    stranger can cause at will (a forged webhook), so a flood of them costs a few lines,
    not a line (and its formatting and redaction) per request."""

    def __init__(
        self,
        interval: float = 10.0,
        burst: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._interval = interval
        self._burst = burst
        self._clock = clock
        self._window_start = float("-inf")
        self._in_window = 0
        self.suppressed = 0

    def allow(self) -> int | None:
        """None to leave this line out; else how many were left out before it."""
        now = self._clock()
        if now - self._window_start >= self._interval:
            self._window_start, self._in_window = now, 0
        if self._in_window >= self._burst:
            self.suppressed += 1
            return None
        self._in_window += 1
        left_out, self.suppressed = self.suppressed, 0
        return left_out


def _rendered_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        # A bad format string must not take the log call (and its caller) down with it.
        return f"{record.msg!s} {record.args!r}"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        name: value
        for name, value in vars(record).items()
        if name not in _STANDARD_ATTRIBUTES
        and name not in _IGNORED_EXTRAS
        and not name.startswith("_")
    }


class TextFormatter(logging.Formatter):
    """`2024-05-01 12:00:00,123 INFO    adapter.webhook: text SM… accepted [message_sid=SM…]`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = extra_fields(record)
        if fields:
            line += " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the fields, and the
    traceback (`exception`) as one string, so a multi-line traceback stays one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in extra_fields(record).items():
            line.setdefault(name, value)  # a field never hides the line's own keys
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


__all__ = [
    "JsonFormatter",
    "LogThrottle",
    "Redactor",
    "TextFormatter",
    "mask_numbers",
    "message_fields",
]
