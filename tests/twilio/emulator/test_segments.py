"""num_segments as Twilio bills it: GSM-7 (160 / 153 per part, extension chars count 2)
or UCS-2 (70 / 67 per part, counted in UTF-16 code units)."""

from __future__ import annotations

import pytest

from adapter.twilio.emulator.segments import count_segments


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        pytest.param("", 1, id="empty"),
        pytest.param("hello", 1, id="short-gsm"),
        pytest.param("a" * 160, 1, id="gsm-full-single"),
        pytest.param("a" * 161, 2, id="gsm-one-over"),
        pytest.param("a" * 306, 2, id="gsm-two-full-parts"),
        pytest.param("a" * 307, 3, id="gsm-third-part"),
        pytest.param("a" * 1600, 11, id="gsm-longest-body"),
        pytest.param("é" * 160, 1, id="accented-in-gsm-basic"),
        pytest.param("€" * 80, 1, id="euro-counts-two"),
        pytest.param("€" * 81, 2, id="euro-over-single"),
        pytest.param("{" + "a" * 159, 2, id="brace-counts-two"),
        # 306 septets would be 2 parts, but the escape pair may not straddle parts.
        pytest.param("a" * 152 + "{" + "a" * 152, 3, id="escape-not-split"),
        pytest.param("ç" * 70, 1, id="non-gsm-ucs2-single"),
        pytest.param("ç" * 71, 2, id="non-gsm-ucs2-over"),
        pytest.param("😀" * 35, 1, id="emoji-two-units-each"),
        pytest.param("😀" * 36, 2, id="emoji-over"),
        # 134 code units would be 2 parts, but a surrogate pair may not straddle parts.
        pytest.param("ç" * 66 + "😀" + "ç" * 66, 3, id="surrogate-not-split"),
        pytest.param("Hello 👋", 1, id="mixed-gsm-and-emoji"),
        pytest.param("a" * 100 + "👋", 2, id="one-emoji-makes-long-text-ucs2"),
    ],
)
def test_count_segments(body: str, segments: int) -> None:
    assert count_segments(body) == segments
