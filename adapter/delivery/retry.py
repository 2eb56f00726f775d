"""When to try a failed send again, and when to stop.

`RetryPolicy.decide` is a pure function of the attempt's facts: it reads no clock and
keeps no state, so the sender stays in charge of time and the store of durability.

Delays use exponential backoff with "full jitter" (a uniform draw between zero and
the exponential ceiling): many replies failing together, say during a Twilio outage,
then come back spread out instead of in one burst.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias

# Doubling stops here: past it the ceiling is astronomically above any sane
# `max_delay`, and 2**n for a huge n would overflow a float.
_MAX_EXPONENT = 64

_default_rng = random.Random()


@dataclass(frozen=True)
class RetryAt:
    """Try again at `at`, which is `delay` seconds after the decision's `now`."""

    at: datetime
    delay: float


@dataclass(frozen=True)
class GiveUp:
    """Stop trying: "dead" (dead-lettered: out of attempts or too old) when `dead`,
    else "failed" (Twilio refused the message for good)."""

    dead: bool
    reason: str


Decision: TypeAlias = RetryAt | GiveUp


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8  # setting SMS_ADAPTER_SEND_MAX_ATTEMPTS
    # Setting SMS_ADAPTER_SEND_MAX_AGE. A reply that has waited this long is
    # dead-lettered rather than sent: "see you at 5" arriving at 9 does harm.
    max_age: timedelta = timedelta(hours=4)
    base_delay: float = 0.5  # seconds
    max_delay: float = 300.0  # seconds

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.max_age <= timedelta(0):
            raise ValueError(f"max_age must be positive, not {self.max_age}")
        if not self.base_delay > 0:
            raise ValueError(f"base_delay must be positive, not {self.base_delay}")
        if not self.max_delay >= self.base_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must not be below base_delay ({self.base_delay})"
            )

    def too_old(self, *, created_at: datetime, now: datetime) -> bool:
        """Whether a reply created at `created_at` must no longer be sent at `now`."""
        return now - created_at >= self.max_age

    def decide(
        self,
        *,
        attempts: int,
        created_at: datetime,
        now: datetime,
        retryable: bool,
        retry_after: float | None,
        rng: random.Random | None = None,
    ) -> Decision:
        """What to do after the `attempts`-th attempt (counting from 1) failed.

        `retry_after` is the server's Retry-After in seconds, if it sent one: the delay
        is never shorter, even if that exceeds `max_delay` (asking sooner is futile).
        """
        if attempts < 1:
            raise ValueError(f"attempts counts the failed attempts made, so >= 1, not {attempts}")
        if not retryable:
            return GiveUp(dead=False, reason="not retryable")
        if attempts >= self.max_attempts:
            return GiveUp(
                dead=True, reason=f"out of attempts ({attempts} of {self.max_attempts} made)"
            )
        age = now - created_at
        time_left = (self.max_age - age).total_seconds()
        if time_left <= 0:
            return GiveUp(dead=True, reason=f"too old ({age} old, max age {self.max_age})")
        delay = self.backoff(attempts, rng)
        if retry_after is not None and retry_after > delay:  # a NaN fails the test: ignored
            delay = retry_after
        # Decided now rather than at the next attempt: waiting only to dead-letter
        # would hold back the conversation's later replies for nothing. (`not <`
        # also catches an infinite Retry-After before it overflows a datetime.)
        if not delay < time_left:
            return GiveUp(
                dead=True,
                reason=f"too old by the next attempt in {delay:.1f}s (max age {self.max_age})",
            )
        at = now + timedelta(seconds=delay)
        return RetryAt(at=at, delay=delay)

    def backoff(self, attempts: int, rng: random.Random | None = None) -> float:
        """A full-jitter delay in seconds after `attempts` failed attempts:
        uniform(0, min(max_delay, base_delay * 2 ** (attempts - 1)))."""
        exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
        ceiling = min(self.max_delay, self.base_delay * 2.0**exponent)
        return (rng or _default_rng).uniform(0.0, ceiling)
