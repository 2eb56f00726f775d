"""Keeping the connector path secrets and the bots' endpoint URLs out of other libraries'
log lines: uvicorn's access log names every request path (the serviceUrl's secret is in
it), httpx logs every request URL (an endpoint may carry a key in its query string).

The adapter's own redaction (`adapter.logs`) knows configured secrets only; these are
derived at start-up, so the bridge installs this filter on those two loggers while it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

LOGGERS = ("uvicorn.access", "httpx")


class ReplaceInLogs(logging.Filter):
    def __init__(self, replacements: Mapping[str, str]) -> None:
        super().__init__()
        # Longest first: a URL containing another is replaced whole.
        self._replacements = sorted(replacements.items(), key=lambda item: -len(item[0]))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret, shown in self._replacements:
            redacted = redacted.replace(secret, shown)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True

    def install(self) -> None:
        for name in LOGGERS:
            logging.getLogger(name).addFilter(self)

    def uninstall(self) -> None:
        for name in LOGGERS:
            logging.getLogger(name).removeFilter(self)
