"""Twilio's Smart Encoding: Unicode characters that look like GSM-7 ones are swapped for
them, so one curly quote does not turn a whole message into UCS-2 (70 characters a
segment instead of 160). Twilio does this when a send carries SmartEncoded=true; the
table is the common part of Twilio's published list."""

from __future__ import annotations

from typing import Final

SMART_REPLACEMENTS: Final[dict[str, str]] = {
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u201c": '"',  # “
    "\u201d": '"',  # ”
    "\u201e": '"',  # „
    "\u02ba": '"',
    "\u02ee": '"',
    "\u201f": '"',
    "\u275d": '"',
    "\u275e": '"',
    "\u301d": '"',
    "\u301e": '"',
    "\uff02": '"',
    "\u2018": "'",  # ‘
    "\u2019": "'",  # ’
    "\u201a": "'",
    "\u201b": "'",
    "\u02bb": "'",
    "\u02c8": "'",
    "\u02bc": "'",
    "\u02bd": "'",
    "\u02b9": "'",
    "\u2032": "'",
    "\u2035": "'",
    "\u275b": "'",
    "\u275c": "'",
    "\uff07": "'",
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",  # –
    "\u2014": "-",  # —
    "\u2015": "-",
    "\u2212": "-",
    "\ufe63": "-",
    "\uff0d": "-",
    "\u00a0": " ",  # no-break space
    "\u2000": " ",
    "\u2001": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u2004": " ",
    "\u2005": " ",
    "\u2006": " ",
    "\u2007": " ",
    "\u2008": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u202f": " ",
    "\u205f": " ",
    "\u3000": " ",
    "\u200b": "",  # zero-width space
    "\u2026": "...",  # …
    "\u2022": "-",  # •
    "\u2039": "<",
    "\u203a": ">",
    "\u2044": "/",
    "\u2215": "/",
    "\uff0c": ",",
    "\uff1a": ":",
    "\uff1b": ";",
    "\uff01": "!",
    "\uff1f": "?",
    "\u02c6": "^",
    "\u02dc": "~",
    "\u00ad": "",  # soft hyphen
}

_TABLE: Final = str.maketrans({k: v for k, v in SMART_REPLACEMENTS.items() if len(k) == 1})


def smart_encode(text: str) -> str:
    """`text` as Twilio sends it with SmartEncoded=true."""
    return text.translate(_TABLE)
