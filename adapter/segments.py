"""How many SMS segments a body costs, counted the way Twilio bills it (`num_segments`).

A body that fits the GSM-7 alphabet is sent in 7-bit septets: 160 in a single segment,
153 per segment once it is split (the rest of each segment carries the concatenation
header). The extension characters (`{`, `€`, ...) take two septets, an escape and the
character, and a segment never ends between the two. Any other character forces UCS-2
for the whole body: 70 UTF-16 code units in one segment, 67 per part, and a surrogate
pair (most emoji) is never split across parts either.

The adapter (`ctx.segments()`) and the Twilio emulator (`num_segments`) both count here.
"""

from __future__ import annotations

from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


def is_gsm7(body: str) -> bool:
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in body)


def encoding_of(body: str) -> Encoding:
    """The encoding a body travels in: one character outside GSM-7 makes it all UCS-2."""
    return "GSM-7" if is_gsm7(body) else "UCS-2"


def count_segments(body: str) -> int:
    """The number of segments Twilio reports in `num_segments` (at least 1)."""
    if is_gsm7(body):
        costs = [2 if char in GSM7_EXTENSION else 1 for char in body]
        single, part = GSM7_SINGLE, GSM7_PART
    else:
        costs = [2 if ord(char) > 0xFFFF else 1 for char in body]
        single, part = UCS2_SINGLE, UCS2_PART
    if sum(costs) <= single:
        return 1
    return _parts(costs, part)


def _parts(costs: list[int], capacity: int) -> int:
    parts, used = 1, 0
    for cost in costs:
        if used + cost > capacity:
            parts, used = parts + 1, 0
        used += cost
    return parts
