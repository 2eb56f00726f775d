"""Twilio's webhook connection overrides: settings in the webhook URL's fragment.

Twilio reads `#ct=...&rt=...&tt=...&rc=...&rp=...` off a webhook URL, requests the URL
without the fragment (fragments never travel in HTTP, and the signature covers the URL
requested), and retries a failed request as they say:

    ct  connect timeout, ms          rc  retries after the first attempt (0 to 5)
    rt  read timeout, ms             rp  what is retried: ct (connection failures),
    tt  all attempts together, ms        rt (read timeouts), 4xx, 5xx, all; comma-separated

The emulator applies them only when the URL carries a fragment; without one it posts
once, as it always did, so a test decides which recovery path it shows: Twilio's retry
(`#rc=3&rp=all`) or the adapter's catch-up through List Messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

RETRY_KINDS = frozenset({"ct", "rt", "4xx", "5xx", "all"})
MAX_RETRIES = 5


@dataclass(frozen=True)
class ConnectionOverrides:
    connect_timeout: float = 5.0  # seconds
    read_timeout: float = 15.0
    total_timeout: float | None = None
    retries: int = 1
    retry_on: frozenset[str] = frozenset({"ct"})

    def retries_after(self, failure: str) -> bool:
        """Whether a failure of this kind ("ct", "rt", "4xx", "5xx") is retried."""
        return "all" in self.retry_on or failure in self.retry_on


def split_overrides(url: str) -> tuple[str, ConnectionOverrides | None]:
    """(the URL Twilio requests, the overrides its fragment gives, or None without one).
    ValueError names a bad override."""
    parts = urlsplit(url)
    if not parts.fragment:
        return url, None
    plain = urlunsplit(parts._replace(fragment=""))
    values = dict(parse_qsl(parts.fragment, keep_blank_values=True))
    overrides = ConnectionOverrides(
        connect_timeout=_millis(values, "ct", 5_000) / 1000,
        read_timeout=_millis(values, "rt", 15_000) / 1000,
        total_timeout=_millis(values, "tt", 0) / 1000 or None,
        retries=_retries(values),
        retry_on=_retry_on(values),
    )
    return plain, overrides


def _millis(values: dict[str, str], name: str, default: int) -> int:
    text = values.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not 100 <= int(text) <= 60_000:
        raise ValueError(f"connection override {name}={text!r}: milliseconds from 100 to 60000")
    return int(text)


def _retries(values: dict[str, str]) -> int:
    text = values.get("rc", "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) > MAX_RETRIES:
        raise ValueError(f"connection override rc={text!r}: a retry count from 0 to {MAX_RETRIES}")
    return int(text)


def _retry_on(values: dict[str, str]) -> frozenset[str]:
    text = values.get("rp", "").strip()
    if not text:
        return frozenset({"ct"})
    kinds = frozenset(kind.strip().lower() for kind in text.split(","))
    unknown = sorted(kinds - RETRY_KINDS)
    if unknown:
        raise ValueError(f"connection override rp: unknown {unknown}; use {sorted(RETRY_KINDS)}")
    return kinds
