"""The loop the background workers share (adapter/delivery/periodic.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapter.delivery import periodic as periodic_module
from adapter.delivery.periodic import Periodic

LOGGER = logging.getLogger("test.periodic")


async def run_until(periodic: Periodic, event: asyncio.Event) -> None:
    """Run `periodic` until `event` is set, then stop it, within 10 s each."""
    periodic.start()
    try:
        async with asyncio.timeout(10):
            await event.wait()
    finally:
        async with asyncio.timeout(10):
            await periodic.stop()


async def test_a_failing_round_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def round_() -> bool:
        rounds.append(len(rounds))
        if len(rounds) == 3:
            third.set()
        if len(rounds) == 1:
            raise RuntimeError("the store went away")
        return True

    await run_until(Periodic("test worker", round_, 0.01, LOGGER), third)

    (failure,) = [r for r in caplog.records if r.name == "test.periodic"]
    assert failure.getMessage() == "test worker failed; trying again later"
    assert failure.exc_info is not None and "the store went away" in str(failure.exc_info[1])


async def test_stop_cancels_a_round_under_way_and_no_other_starts() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    calls = 0

    async def round_() -> bool:
        nonlocal calls
        calls += 1
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    periodic = Periodic("slow worker", round_, 0.0, LOGGER)
    periodic.start()
    async with asyncio.timeout(10):
        await started.wait()
        await periodic.stop()
    assert cancelled.is_set()
    await asyncio.sleep(0.05)
    assert calls == 1
    await periodic.stop()  # a second stop is harmless


class PausesRecorded:
    """Stands in for the asyncio module in adapter.delivery.periodic: notes each pause
    asked for, and pauses only a loop turn."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await asyncio.sleep(0)


async def test_a_failed_round_is_retried_long_before_the_interval_then_less_and_less_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded = PausesRecorded()
    monkeypatch.setattr(periodic_module, "asyncio", recorded)
    rounds = 0
    fifth = asyncio.Event()

    async def round_() -> bool:
        nonlocal rounds
        rounds += 1
        if rounds == 5:
            fifth.set()
        return rounds == 4  # Twilio unreachable for three rounds, back for the fourth

    await run_until(Periodic("catch-up", round_, 60.0, LOGGER), fifth)

    first = periodic_module.RETRY_FIRST
    # Three failures: 1 s, 2 s, 4 s; a success: the interval; a failure: 1 s again.
    assert recorded.pauses[:5] == [first, 2 * first, 4 * first, 60.0, first]


async def test_a_round_that_hangs_is_cut_short_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(periodic_module, "RETRY_FIRST", 0.01)
    rounds = 0
    second = asyncio.Event()

    async def round_() -> bool:
        nonlocal rounds
        rounds += 1
        if rounds == 2:
            second.set()
            return True
        await asyncio.Event().wait()  # a store call that never returns
        return True

    await run_until(Periodic("catch-up", round_, 3600.0, LOGGER, round_timeout=0.05), second)

    (cut,) = [r for r in caplog.records if r.name == "test.periodic"]
    assert cut.levelname == "WARNING"
    assert cut.getMessage() == "catch-up took longer than 0 s and was cut short; trying again later"
