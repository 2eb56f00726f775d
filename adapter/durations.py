"""Duration settings as people write them: "4h", "30m", "90s", "1d", "500ms", "120"."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """A duration setting: "4h", "30m", "90s", "1d", "500ms", or plain seconds "120"."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a number with an optional unit"
            " (ms, s, m, h or d), such as '90s' or '4h'"
        )
    number, unit = match.groups()
    try:
        return timedelta(seconds=float(number) * _UNIT_SECONDS[unit or "s"])
    except OverflowError:
        raise ValueError(f"invalid duration {text!r}: too long") from None
