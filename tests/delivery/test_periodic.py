"""The loop the background workers share (adapter/delivery/periodic.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapter.delivery.periodic import Periodic


async def test_a_failing_round_is_logged_and_the_next_one_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []
    third = asyncio.Event()

    async def round_() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 3:
            third.set()
        if len(rounds) == 1:
            raise RuntimeError("the store went away")

    periodic = Periodic("test worker", round_, 0.01, logging.getLogger("test.periodic"))
    periodic.start()
    async with asyncio.timeout(10):
        await third.wait()
    await periodic.stop()

    assert not periodic.running
    (failure,) = [r for r in caplog.records if r.name == "test.periodic"]
    assert failure.getMessage() == "test worker failed; trying again later"
    assert failure.exc_info is not None and "the store went away" in str(failure.exc_info[1])


async def test_stop_cancels_a_round_under_way_and_no_other_starts() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    calls = 0

    async def round_() -> None:
        nonlocal calls
        calls += 1
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    periodic = Periodic("slow worker", round_, 0.0, logging.getLogger("test.periodic"))
    periodic.start()
    async with asyncio.timeout(10):
        await started.wait()
        await periodic.stop()
    assert cancelled.is_set()
    await asyncio.sleep(0.05)
    assert calls == 1
    await periodic.stop()  # a second stop is harmless
