"""Twilio's opt-out vocabulary: the keywords it acts on, OptOutType, and error 21610.

On long codes and toll-free numbers Twilio handles these keywords itself: after STOP it
refuses every message from that sender to that person (error 21610) until START, and
it answers STOP, START and HELP with its own confirmation texts. A keyword is the whole
body, trimmed, in any case ("stop" is one, "please stop" is not). With Advanced Opt-Out
(Messaging Services), Twilio also flags texts matching custom keywords with OptOutType.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

# "Attempt to send to unsubscribed recipient".
UNSUBSCRIBED_ERROR: Final = 21610


class OptOutType(enum.StrEnum):
    STOP = "STOP"
    START = "START"
    HELP = "HELP"


KEYWORDS: Final[Mapping[str, OptOutType]] = MappingProxyType(
    {
        **dict.fromkeys(
            ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
            OptOutType.STOP,
        ),
        **dict.fromkeys(("START", "YES", "UNSTOP"), OptOutType.START),
        **dict.fromkeys(("HELP", "INFO"), OptOutType.HELP),
    }
)


def keyword_type(body: str) -> OptOutType | None:
    """What Twilio's default keywords make of `body`: STOP, START, HELP or nothing."""
    return KEYWORDS.get(body.strip().upper())


def opt_out_type(body: str, reported: str | None = None) -> OptOutType | None:
    """The opt-out meaning of a text: Twilio's OptOutType parameter when it sent one
    (it knows the custom keywords of a Messaging Service), else the default keywords."""
    if reported:
        try:
            return OptOutType(reported.strip().upper())
        except ValueError:
            pass  # a type this code does not know yet: judge the body instead
    return keyword_type(body)
