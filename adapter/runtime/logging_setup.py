"""Logging for a running adapter: one redacting handler on the root logger, set up from
the settings (format, level, which secrets to hide, whether to mask numbers)."""

from __future__ import annotations

import base64
import logging
import sys
from typing import TextIO
from urllib.parse import quote, urlsplit

from adapter.logs import JsonFormatter, Redactor, TextFormatter
from adapter.runtime.settings import Settings

_OURS = "_sms_adapter_handler"


def secret_forms(settings: Settings) -> list[str]:
    """Every configured secret, in each form it can take in a log line: as is,
    URL-encoded, and inside the Basic auth header that carries it to Twilio."""
    secrets = settings.secrets()
    # A database URL's password is a secret too, though the setting as a whole is not.
    try:
        database_password = urlsplit(settings.database).password
    except ValueError:  # not a URL at all: a file name, however odd
        database_password = None
    if database_password:
        secrets.append(database_password)
    forms = set(secrets)
    forms.update(quote(secret, safe="") for secret in secrets)
    pairs = [(settings.account_sid, settings.auth_token), (settings.api_key, settings.api_secret)]
    for username, password in pairs:
        if username and password:
            forms.add(base64.b64encode(f"{username}:{password}".encode()).decode("ascii"))
    # Longest first: a secret containing another is replaced whole.
    return sorted((form for form in forms if form), key=len, reverse=True)


def build_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter() if settings.log_format == "json" else TextFormatter()
    handler.setFormatter(formatter)
    handler.addFilter(Redactor(secret_forms(settings), mask_numbers=settings.log_mask_numbers))
    return handler


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Route every logger in the process through one redacting handler on the root.

    uvicorn's loggers lose their own handlers and propagate here, so their lines follow
    the same format and redaction (run uvicorn with `log_config=None` so it does not
    install its own again). Calling this again replaces the handler it installed.
    """
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _OURS, False):
            root.removeHandler(existing)
            existing.close()
    handler = build_handler(settings, stream)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        # The root's level rules until uvicorn (started after this) sets its own.
        uvicorn_logger.setLevel(logging.NOTSET)
    # httpx logs every request at INFO, doubling the adapter's own line about each send.
    logging.getLogger("httpx").setLevel(
        logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    )
    return handler
