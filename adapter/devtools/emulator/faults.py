"""Misbehaviour the emulator can inject into Send Message, for chaos tests and benchmarks.

`parse_faults("429=0.1,500=0.1,drop=0.05,slow=0.05")` gives the chance of each fault per
create request; at most one fault happens per request. Two options may ride along in the
same string: `slow_ms=<int>` (how long a slow answer takes) and `seed=<int>` (makes the
sequence of faults reproducible); and `lists=1` makes List Messages (history syncs,
inbound catch-up) answer 429 and 500 at the same rates too.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass


class Fault(enum.StrEnum):
    TOO_MANY_REQUESTS = "429"  # answer 429 + Retry-After, create nothing
    SERVER_ERROR = "500"  # answer 500, create nothing
    DROP = "drop"  # create the message, then cut the connection without an answer
    SLOW = "slow"  # create the message, then answer after `slow_ms`


@dataclass(frozen=True)
class Faults:
    """Per-request probabilities (0..1, summing to at most 1) of each fault."""

    too_many_requests: float = 0.0
    server_error: float = 0.0
    drop: float = 0.0
    slow: float = 0.0
    slow_ms: int = 3000
    seed: int | None = None
    lists: bool = False  # 429 and 500 also answer List Messages

    def __post_init__(self) -> None:
        for fault, rate in self._rates():
            if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
                raise ValueError(f"fault {fault.value}: rate {rate} is not between 0 and 1")
        total = sum(rate for _, rate in self._rates())
        # A little slack so "0.7,0.3"-style specs are not refused over float rounding.
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to {total:g}, more than 1")
        if self.slow_ms < 0:
            raise ValueError(f"slow_ms {self.slow_ms} is negative")

    @property
    def active(self) -> bool:
        return any(rate > 0 for _, rate in self._rates())

    def choose(self, rng: random.Random) -> Fault | None:
        """Draw the fault for one request (None: behave)."""
        if not self.active:
            return None
        draw = rng.random()
        threshold = 0.0
        for fault, rate in self._rates():
            threshold += rate
            if draw < threshold:
                return fault
        return None

    def _rates(self) -> tuple[tuple[Fault, float], ...]:
        return (
            (Fault.TOO_MANY_REQUESTS, self.too_many_requests),
            (Fault.SERVER_ERROR, self.server_error),
            (Fault.DROP, self.drop),
            (Fault.SLOW, self.slow),
        )


_RATE_FIELDS = {
    Fault.TOO_MANY_REQUESTS.value: "too_many_requests",
    Fault.SERVER_ERROR.value: "server_error",
    Fault.DROP.value: "drop",
    Fault.SLOW.value: "slow",
}
_INT_FIELDS = ("slow_ms", "seed", "lists")


def parse_faults(spec: str) -> Faults:
    """Parse "429=0.1,500=0.1,drop=0.05,slow=0.05[,slow_ms=3000][,seed=7]"; "" means none.

    Raises ValueError naming the item that is wrong.
    """
    rates: dict[str, float] = {}
    options: dict[str, int] = {}
    for raw_item in spec.split(","):
        item = raw_item.strip()
        if not item:
            continue
        name, separator, value = (part.strip() for part in item.partition("="))
        if not separator or not value:
            raise ValueError(f"fault item {item!r} is not name=value")
        if name in rates or name in options:
            raise ValueError(f"fault item {item!r} repeats {name!r}")
        if name in _RATE_FIELDS:
            rates[name] = _rate(item, value)
        elif name in _INT_FIELDS:
            options[name] = _integer(item, value)
        else:
            known = ", ".join([*_RATE_FIELDS, *_INT_FIELDS])
            raise ValueError(f"fault item {item!r}: unknown fault {name!r} (known: {known})")
    try:
        return Faults(
            **{_RATE_FIELDS[name]: rate for name, rate in rates.items()},
            slow_ms=options.get("slow_ms", Faults.slow_ms),
            seed=options.get("seed"),
            lists=bool(options.get("lists", 0)),
        )
    except ValueError as error:
        raise ValueError(f"faults {spec!r}: {error}") from None


def _rate(item: str, value: str) -> float:
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(f"fault item {item!r}: {value!r} is not a number") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ValueError(f"fault item {item!r}: {value!r} is not a fraction between 0 and 1")
    return rate


def _integer(item: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"fault item {item!r}: {value!r} is not an integer") from None
    return number
