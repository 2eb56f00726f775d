from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from adapter.delivery.retry import GiveUp, RetryAt, RetryPolicy
from adapter.durations import parse_duration

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy()  # 8 attempts, 4 h, 0.5 s base, 300 s cap


def decide(
    *,
    attempts: int = 1,
    age: timedelta = timedelta(0),
    retryable: bool = True,
    retry_after: float | None = None,
    seed: int = 0,
    policy: RetryPolicy = POLICY,
) -> RetryAt | GiveUp:
    return policy.decide(
        attempts=attempts,
        created_at=NOW - age,
        now=NOW,
        retryable=retryable,
        retry_after=retry_after,
        rng=random.Random(seed),
    )


@pytest.mark.parametrize(
    ("case", "kwargs", "dead", "reason"),
    [
        ("permanent error", {"retryable": False}, False, "not retryable"),
        # A permanent error is "failed" even when the row is also out of time or tries.
        (
            "permanent beats exhausted and old",
            {"retryable": False, "attempts": 8, "age": timedelta(hours=5)},
            False,
            "not retryable",
        ),
        ("last attempt failed", {"attempts": 8}, True, "out of attempts (8 of 8 made)"),
        ("past the last attempt", {"attempts": 9}, True, "out of attempts"),
        ("exactly max age", {"age": timedelta(hours=4)}, True, "too old (4:00:00 old"),
        ("older than max age", {"age": timedelta(days=2)}, True, "too old"),
        (
            "Retry-After lands past max age",
            {"age": timedelta(hours=4) - timedelta(seconds=10), "retry_after": 10.0},
            True,
            "too old by the next attempt in 10.0s",
        ),
        (
            "infinite Retry-After",
            {"retry_after": math.inf},
            True,
            "too old by the next attempt",
        ),
    ],
)
def test_gives_up(case: str, kwargs: dict[str, object], dead: bool, reason: str) -> None:
    decision = decide(**kwargs)  # type: ignore[arg-type]
    assert isinstance(decision, GiveUp), case
    assert decision.dead is dead
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("first failure", {"attempts": 1}),
        ("one attempt left", {"attempts": 7}),
        ("nearly too old", {"age": timedelta(hours=4) - timedelta(seconds=1)}),
        ("Retry-After within max age", {"age": timedelta(hours=3), "retry_after": 60.0}),
    ],
)
def test_retries(case: str, kwargs: dict[str, object]) -> None:
    decision = decide(**kwargs)  # type: ignore[arg-type]
    assert isinstance(decision, RetryAt), case
    assert decision.at == NOW + timedelta(seconds=decision.delay)


@pytest.mark.parametrize(
    ("attempts", "retry_after"),
    [(1, 10.0), (3, 2.5), (7, 600.0)],  # 600 s: above max_delay, still honoured
)
def test_waits_at_least_retry_after(attempts: int, retry_after: float) -> None:
    decision = decide(attempts=attempts, retry_after=retry_after)
    assert decision == RetryAt(at=NOW + timedelta(seconds=retry_after), delay=retry_after)


def test_jitter_longer_than_retry_after_is_kept() -> None:
    seed = 7
    jitter = POLICY.backoff(7, random.Random(seed))  # uniform(0, 32)
    assert jitter > 0.001
    decision = decide(attempts=7, retry_after=0.001, seed=seed)
    assert isinstance(decision, RetryAt)
    assert decision.delay == jitter


def test_unreadable_retry_after_is_ignored() -> None:
    decision = decide(attempts=1, retry_after=math.nan)
    assert isinstance(decision, RetryAt)
    assert 0 <= decision.delay <= 0.5


@pytest.mark.parametrize(
    ("attempts", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (10, 256.0), (11, 300.0), (20, 300.0)],
)
def test_full_jitter_spans_zero_to_the_capped_ceiling(attempts: int, ceiling: float) -> None:
    policy = RetryPolicy(max_attempts=100)
    delays = []
    for seed in range(200):
        decision = decide(attempts=attempts, seed=seed, policy=policy)
        assert isinstance(decision, RetryAt)
        delays.append(decision.delay)
    assert all(0 <= d <= ceiling for d in delays)
    # Spread over the whole range, not bunched at one end.
    assert min(delays) < 0.1 * ceiling
    assert max(delays) > 0.9 * ceiling


def test_ceiling_stays_capped_for_huge_attempt_counts() -> None:
    policy = RetryPolicy(max_attempts=10**9)
    decision = decide(attempts=10**6, policy=policy)
    assert isinstance(decision, RetryAt)
    assert 0 <= decision.delay <= 300.0


def test_same_seed_same_decision() -> None:
    assert decide(attempts=5, seed=42) == decide(attempts=5, seed=42)
    assert decide(attempts=5, seed=42) != decide(attempts=5, seed=43)


@pytest.mark.parametrize(
    ("age", "too_old"),
    [
        (timedelta(hours=4) - timedelta(microseconds=1), False),
        (timedelta(hours=4), True),
    ],
)
def test_too_old(age: timedelta, too_old: bool) -> None:
    assert POLICY.too_old(created_at=NOW - age, now=NOW) is too_old


def test_attempts_must_count_the_failed_attempt() -> None:
    with pytest.raises(ValueError, match="not 0"):
        decide(attempts=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_age": timedelta(0)}, "max_age"),
        ({"base_delay": 0.0}, "base_delay"),
        ({"base_delay": 2.0, "max_delay": 1.0}, "max_delay"),
    ],
)
def test_rejects_nonsense_settings(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4h", timedelta(hours=4)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("1d", timedelta(days=1)),
        ("120", timedelta(seconds=120)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
        ("0", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "h", "4x", "-4h", "4 h", "4h30m", "1e3", ".5h", "inf", "nan", "99999999999999d"],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as raised:
        parse_duration(text)
    assert repr(text) in str(raised.value)


def test_a_cap_equal_to_the_base_delay_is_a_constant_ceiling() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=2.0)
    delays = [policy.backoff(attempts, random.Random(seed)) for attempts, seed in [(1, 1), (9, 2)]]
    assert all(0.0 <= delay <= 2.0 for delay in delays)
