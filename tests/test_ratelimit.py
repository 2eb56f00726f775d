"""AccountLimiter against its promises.

Most tests run on `VirtualTimeLoop`: a real asyncio loop (real tasks, locks and
sleeps) whose clock jumps straight to the next timer whenever every task is
blocked. Start times are then exact, so tests can assert them to the tick, run
minutes of traffic in milliseconds, and a leaked slot shows up as a `Deadlock`
instead of a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import selectors
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.ratelimit import (
    MAX_BACKOFF,
    AccountLimiter,
    Limiter,
    Rate,
    parse_rate,
)
from adapter.twilio.errors import TwilioRateLimited

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")

UNLIMITED_RATE = Rate(1_000_000, 1.0)


class Deadlock(Exception):
    """Every task waits and no timer is due: nothing can ever move again."""


class _VirtualSelector(selectors.BaseSelector):
    """The loop's selector, except that waiting for a timer advances virtual time."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise Deadlock("all tasks are blocked and no timer is pending")
        # nextafter: always move on, even when float rounding makes the step vanish.
        self.now = max(self.now + timeout, math.nextafter(self.now, math.inf))
        return []

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main())
    finally:
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.close()


def now() -> float:
    return asyncio.get_running_loop().time()


def limiter(
    *, rate: Rate = UNLIMITED_RATE, max_concurrency: int = 1000, per_sender_mps: float | None = None
) -> AccountLimiter:
    return AccountLimiter(
        max_concurrency=max_concurrency,
        rate=rate,
        per_sender_mps=per_sender_mps,
        clock=asyncio.get_running_loop().time,
    )


async def request(
    limits: Limiter, starts: list[float], sender: str | None = None, hold: float = 0.0
) -> float:
    """One request: records when it started and occupies its slot for `hold` seconds."""
    async with limits.slot(sender):
        started = now()
        starts.append(started)
        await asyncio.sleep(hold)
    return started


async def requests_at_once(limits: Limiter, senders: list[str | None]) -> list[float]:
    """Start times of requests that all arrive at the same moment, in arrival order."""
    starts: list[float] = []
    return list(await asyncio.gather(*(request(limits, starts, s) for s in senders)))


def assert_window_respected(starts: list[float], rate: Rate) -> None:
    ordered = sorted(starts)
    for i in range(len(ordered) - rate.count):
        # Starts i .. i+count-1 all lie within [ordered[i], ordered[i] + per) at most.
        assert ordered[i + rate.count] >= ordered[i] + rate.per_seconds, (
            f"{rate.count + 1} starts within {rate.per_seconds}s from t={ordered[i]}"
        )


def assert_arrivals_respected(spans: list[tuple[float, float]], rate: Rate) -> None:
    """No window at Twilio's side can hold more than `count` requests, wherever between
    its start and its answer each request arrived there: the requests that may arrive
    within [t, t + per) are those answered at t or later and started before t + per,
    and the most of them are found with t at an answer."""
    for _, answered in spans:
        could_arrive = [
            (start, end)
            for start, end in spans
            if end >= answered and start < answered + rate.per_seconds
        ]
        assert len(could_arrive) <= rate.count, (
            f"{len(could_arrive)} requests may arrive within {rate.per_seconds}s "
            f"from t={answered}: {could_arrive}"
        )


async def spanned_request(
    limits: Limiter, spans: list[tuple[float, float]], hold: float, sender: str | None = None
) -> None:
    async with limits.slot(sender):
        started = now()
        await asyncio.sleep(hold)
    spans.append((started, now()))


# --- the rate --------------------------------------------------------------------


# Totals are whole multiples of `count`, so that a full cap shows as exactly the rate.
@pytest.mark.parametrize(
    ("rate", "total", "hold"),
    [
        (Rate(50, 1.0), 500, 0.0),
        (Rate(50, 1.0), 500, 0.05),  # requests taking a twentieth of the window
        (Rate(50, 1.0), 500, 0.3),  # slots held a while: ~15 in flight at once
        (Rate(5, 0.5), 100, 0.02),
        (Rate(1200, 60.0), 3600, 0.25),  # the default Twilio limit
    ],
)
def test_never_more_than_count_in_any_window_at_twilio_and_uses_the_cap(
    rate: Rate, total: int, hold: float
) -> None:
    async def main() -> list[tuple[float, float]]:
        limits = limiter(rate=rate)
        spans: list[tuple[float, float]] = []
        await asyncio.gather(*(spanned_request(limits, spans, hold) for _ in range(total)))
        return spans

    spans = run_virtual(main)

    assert len(spans) == total
    assert_arrivals_respected(spans, rate)
    starts = [start for start, _ in spans]
    # The first `count` go at once; every later start is one the cap had to pace. A
    # place is held for the window after the answer, so a request's time is spent
    # from it: what is used is `count` per (window + time a request takes).
    throughput = (total - rate.count) / (max(starts) - min(starts))
    assert throughput >= 0.9 * rate.count / (rate.per_seconds + hold)
    if hold <= 0.1 * rate.per_seconds:
        assert throughput >= 0.9 * rate.count / rate.per_seconds


def test_slow_arrivals_do_not_let_the_next_window_overlap() -> None:
    """The issue's case: the first requests wait for new connections and arrive late;
    the next ones must not start a window after the first ones *started*."""

    async def main() -> list[tuple[float, float]]:
        limits = limiter(rate=Rate(10, 1.0))
        spans: list[tuple[float, float]] = []
        first = [spanned_request(limits, spans, hold=0.6) for _ in range(10)]
        warm = [spanned_request(limits, spans, hold=0.01) for _ in range(10)]
        await asyncio.gather(*first, *warm)
        return spans

    spans = sorted(run_virtual(main))
    # Answered at 0.6: the warm ones start a full window after that, not at t=1.
    assert [start for start, _ in spans[10:]] == [1.6] * 10
    assert_arrivals_respected(spans, Rate(10, 1.0))


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=6),
    per_seconds=st.sampled_from([0.25, 0.5, 1.0, 3.0]),
    gaps=st.lists(st.floats(min_value=0.0, max_value=1.5), min_size=1, max_size=40),
    hold=st.sampled_from([0.0, 0.2, 2.0]),
)
def test_any_arrival_pattern_keeps_the_window(
    count: int, per_seconds: float, gaps: list[float], hold: float
) -> None:
    rate = Rate(count, per_seconds)

    async def main() -> list[tuple[float, float]]:
        limits = limiter(rate=rate, max_concurrency=3)
        spans: list[tuple[float, float]] = []
        tasks = []
        for gap in gaps:
            await asyncio.sleep(gap)
            tasks.append(asyncio.create_task(spanned_request(limits, spans, hold=hold)))
        await asyncio.gather(*tasks)
        return spans

    spans = run_virtual(main)
    assert len(spans) == len(gaps)
    assert_arrivals_respected(spans, rate)


def test_requests_are_admitted_first_come_first_served() -> None:
    async def main() -> list[int]:
        limits = limiter(rate=Rate(1, 1.0))
        order: list[int] = []

        async def numbered(n: int) -> None:
            async with limits.slot():
                order.append(n)

        await asyncio.gather(*(numbered(n) for n in range(10)))
        return order

    assert run_virtual(main) == list(range(10))


# --- concurrency -----------------------------------------------------------------


async def test_concurrency_cap_holds_with_real_tasks() -> None:
    limits = AccountLimiter(max_concurrency=4, rate=UNLIMITED_RATE)
    running = 0
    peak = 0

    async def work() -> None:
        nonlocal running, peak
        async with limits.slot():
            running += 1
            peak = max(peak, running)
            for _ in range(3):
                await asyncio.sleep(0)
            running -= 1

    await asyncio.wait_for(asyncio.gather(*(work() for _ in range(60))), timeout=10)
    assert peak == 4
    assert limits.in_flight == 0


def test_a_freed_slot_goes_to_the_next_waiter_at_once() -> None:
    async def main() -> list[float]:
        limits = limiter(max_concurrency=3)
        starts: list[float] = []
        await asyncio.gather(*(request(limits, starts, hold=1.0) for _ in range(8)))
        return starts

    assert run_virtual(main) == [0, 0, 0, 1, 1, 1, 2, 2]


def test_a_request_that_raises_frees_its_slot() -> None:
    async def main() -> float:
        limits = limiter(max_concurrency=1)
        with pytest.raises(RuntimeError):
            async with limits.slot():
                raise RuntimeError("Twilio said no")
        return await request(limits, [])

    assert run_virtual(main) == 0


# --- per-sender pacing -----------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "mps", "rate", "senders", "expected"),
    [
        ("one sender is spaced evenly", 2.0, UNLIMITED_RATE, ["A"] * 5, [0, 0.5, 1, 1.5, 2]),
        (
            "a busy sender does not hold up others",
            2.0,
            UNLIMITED_RATE,
            ["A", "A", "A", "B", "B"],
            [0, 0.5, 1, 0, 0.5],
        ),
        (
            "requests without a sender are not paced",
            4.0,
            UNLIMITED_RATE,
            ["A", "A", None, None],
            [0, 0.25, 0, 0],
        ),
        (
            "the account window still applies",
            4.0,
            Rate(2, 1.0),
            ["A", "A", "A", "A"],
            [0, 0.25, 1, 1.25],
        ),
    ],
)
def test_per_sender_pacing(
    case: str, mps: float, rate: Rate, senders: list[str | None], expected: list[float]
) -> None:
    async def main() -> list[float]:
        return await requests_at_once(limiter(rate=rate, per_sender_mps=mps), senders)

    assert run_virtual(main) == expected, case


def test_no_sender_pacing_unless_configured() -> None:
    async def main() -> list[float]:
        return await requests_at_once(limiter(), ["A", "A", "A"])

    assert run_virtual(main) == [0, 0, 0]


def test_sender_spacing_survives_idle_periods() -> None:
    async def main() -> list[float]:
        limits = limiter(per_sender_mps=0.5)  # one every 2 s
        first = await request(limits, [], "A")
        await asyncio.sleep(1.5)
        # Other senders come and go meanwhile (their gates are created and dropped).
        await requests_at_once(limits, ["B", "C"])
        second = await request(limits, [], "A")
        await asyncio.sleep(5)
        third = await request(limits, [], "A")
        return [first, second, third]

    assert run_virtual(main) == [0, 2, 7]


def test_a_sender_waiting_its_turn_keeps_its_spacing_while_others_come_and_go() -> None:
    # At 1 msg/s two texts from one number never start within the same second, even
    # when other senders arrive meanwhile (each arrival tidies away idle senders).
    async def main() -> dict[str, list[float]]:
        limits = limiter(per_sender_mps=1.0)
        starts: dict[str, list[float]] = {"A": [], "B": []}

        async def text(sender: str, at: float) -> None:
            await asyncio.sleep(at)
            async with limits.slot(sender):
                starts[sender].append(now())

        await asyncio.gather(text("A", 0), text("A", 0), text("B", 0.5), text("A", 0.6))
        return starts

    assert run_virtual(main) == {"A": [0, 1, 2], "B": [0.5]}


def test_a_sender_whose_first_text_is_held_by_a_pause_keeps_its_place() -> None:
    # The first text from A waits out a 429 pause while holding A's turn; a second text
    # from A queues behind it. B arriving meanwhile must not drop A's queue, or a third
    # text from A would start beside the first.
    async def main() -> dict[str, list[float]]:
        limits = limiter(per_sender_mps=1.0)
        limits.slow_down(5.0)
        starts: dict[str, list[float]] = {"A": [], "B": []}

        async def text(sender: str, at: float) -> None:
            await asyncio.sleep(at)
            async with limits.slot(sender):
                starts[sender].append(now())

        await asyncio.gather(text("A", 0), text("A", 0), text("B", 1), text("A", 2))
        return starts

    assert run_virtual(main) == {"A": [5, 6, 7], "B": [5]}


def test_a_sender_waiting_out_a_pause_keeps_its_turn_while_others_arrive() -> None:
    # A's texts queue for A's turn while 429 pauses hold them; their spacing has run out
    # by then, but a new sender arriving (which tidies away idle senders) must not drop
    # A's queue, or A's next text would start beside the one still waiting.
    async def main() -> dict[str, list[float]]:
        limits = limiter(per_sender_mps=1.0)
        starts: dict[str, list[float]] = {"A": [], "B": [], "C": []}

        async def text(sender: str, at: float) -> None:
            await asyncio.sleep(at)
            async with limits.slot(sender):
                starts[sender].append(now())

        async def twilio_429(at: float, retry_after: float) -> None:
            await asyncio.sleep(at)
            limits.slow_down(retry_after)

        await asyncio.gather(
            text("A", 0),
            text("A", 0),  # waits its turn to t=1, then the pause to t=5.5
            twilio_429(0.5, 5.0),
            text("A", 1.5),  # queued behind it: t=6.5, then the next pause to t=9
            text("B", 2),
            twilio_429(6, 3.0),
            text("C", 7),
            text("A", 8),  # one second after the text before it, never beside it
        )
        return starts

    assert run_virtual(main) == {"A": [0, 5.5, 9, 10], "B": [5.5], "C": [9]}


# --- 429 pauses ------------------------------------------------------------------


def test_slow_down_pauses_everyone_but_not_requests_in_flight() -> None:
    async def main() -> tuple[float, list[float]]:
        limits = limiter(per_sender_mps=10)
        finished_at = -1.0

        async def long_request() -> None:
            nonlocal finished_at
            async with limits.slot("A"):
                limits.slow_down(5.0)
                await asyncio.sleep(1.0)
                finished_at = now()

        first = asyncio.create_task(long_request())
        await asyncio.sleep(0)
        later = await requests_at_once(limits, ["A", "B", None])
        await first
        return finished_at, later

    finished_at, later = run_virtual(main)
    assert finished_at == 1.0
    assert later == [5.0, 5.0, 5.0]


class TooManyRequests(Exception):
    pass


# A script of requests made one after another: a float or None is a request that
# Twilio answered 429 with that Retry-After; "ok" is one that succeeded.
Step = float | None | str


@pytest.mark.parametrize(
    ("case", "script", "expected_starts"),
    [
        ("own backoff starts at 1s", [None, "ok"], [0, 1]),
        ("a 429 after the pause doubles it", [None, None, None, "ok"], [0, 1, 3, 7]),
        ("a success halves it again", [None, None, "ok", None, "ok"], [0, 1, 3, 3, 5]),
        ("never below the first pause", [None, "ok", "ok", None, "ok"], [0, 1, 1, 1, 2]),
        ("Retry-After is honoured", [3.0, "ok"], [0, 3]),
        ("Retry-After leaves the own backoff alone", [3.0, None, "ok"], [0, 3, 4]),
        ("a zero Retry-After means our own backoff", [0.0, "ok"], [0, 1]),
        ("a huge Retry-After is capped", [1e9, "ok"], [0, MAX_BACKOFF]),
        # Our own backoff has grown to 2 s here, so a 1 s pause can only be Twilio's.
        ("a Retry-After of one second is honoured", [None, 1.0, "ok"], [0, 1, 2]),
    ],
)
def test_429_pauses(case: str, script: list[Step], expected_starts: list[float]) -> None:
    async def main() -> list[float]:
        limits = limiter()
        starts: list[float] = []
        for step in script:
            try:
                async with limits.slot():
                    starts.append(now())
                    if step != "ok":
                        assert not isinstance(step, str)
                        limits.slow_down(step)
                        raise TooManyRequests
            except TooManyRequests:
                pass
        return starts

    assert run_virtual(main) == expected_starts, case


def test_a_429_leaving_a_slot_pauses_the_requests_after_it() -> None:
    # Callers do not call slow_down() themselves: Twilio's 429 raised inside the slot is
    # enough, with its Retry-After honoured.
    async def main() -> list[float]:
        limits = limiter()
        with pytest.raises(TwilioRateLimited):
            async with limits.slot():
                raise TwilioRateLimited(
                    operation="send", status=429, code=20429, message="Too Many Requests",
                    more_info=None, retry_after=4.0,
                )  # fmt: skip
        return [await request(limits, []), await request(limits, [])]

    assert run_virtual(main) == [4.0, 4.0]


def test_a_burst_of_429s_from_requests_in_flight_is_one_pause() -> None:
    async def main() -> float:
        limits = limiter()

        async def rejected() -> None:
            async with limits.slot():
                await asyncio.sleep(0.1)
                limits.slow_down(None)

        await asyncio.gather(*(rejected() for _ in range(5)))
        return await request(limits, [])

    assert run_virtual(main) == 1.1


def test_a_request_in_flight_during_a_429_does_not_count_as_a_success() -> None:
    # A success halves our own backoff only when no 429 came while it was in flight;
    # otherwise one slow success would undo the lesson of the 429 beside it.
    async def main() -> float:
        limits = limiter()

        async def rejected(at: float) -> None:
            await asyncio.sleep(at)
            with contextlib.suppress(TooManyRequests):
                async with limits.slot():
                    await asyncio.sleep(0.5)
                    limits.slow_down(None)
                    raise TooManyRequests

        async def slow_success() -> None:
            async with limits.slot():
                await asyncio.sleep(3)  # t=1.5 to 4.5, across the 429 at t=2

        await rejected(0)  # 429 at t=0.5: a 1 s pause; the next one would be 2 s
        # Both start when the pause ends at t=1.5; the 429 at t=2 pauses 2 s and makes
        # the next pause 4 s. The success at t=4.5 must not halve that back to 2 s.
        await asyncio.gather(slow_success(), rejected(0))
        await rejected(0)  # starts at t=4.5, 429 at t=5: a 4 s pause
        return await request(limits, [])

    assert run_virtual(main) == 9.0


# --- cancellation ----------------------------------------------------------------


def test_cancelled_while_waiting_for_a_concurrency_slot_leaks_nothing() -> None:
    async def main() -> list[float]:
        limits = limiter(max_concurrency=1, rate=Rate(2, 1.0))
        release = asyncio.Event()

        async def holder() -> None:
            async with limits.slot():
                await release.wait()

        first = asyncio.create_task(holder())
        cancelled = asyncio.create_task(request(limits, []))
        survivor = asyncio.create_task(request(limits, []))
        await asyncio.sleep(0.5)
        cancelled.cancel()
        await asyncio.sleep(0)
        release.set()
        await first
        # Had the cancelled waiter kept a window entry, the survivor would wait for t=1.
        survivor_start = await survivor
        # Window full (holder and survivor, both answered at t=0.5) until t=1.5.
        after = await request(limits, [])
        assert limits.in_flight == 0
        return [survivor_start, after]

    assert run_virtual(main) == [0.5, 1.5]


@pytest.mark.parametrize(
    ("case", "make_limiter", "sender", "expected"),
    [
        ("waiting for room in the window", lambda: limiter(rate=Rate(1, 1.0)), None, 1.0),
        ("waiting out a 429 pause", lambda: limiter(), None, 1.0),
        ("waiting for its sender's turn", lambda: limiter(per_sender_mps=1.0), "A", 1.0),
    ],
)
def test_cancelled_while_waiting_leaks_nothing(
    case: str, make_limiter: Callable[[], AccountLimiter], sender: str | None, expected: float
) -> None:
    async def main() -> float:
        limits = make_limiter()
        async with limits.slot(sender):
            if case == "waiting out a 429 pause":
                limits.slow_down(1.0)
        waiter = asyncio.create_task(request(limits, [], sender))
        await asyncio.sleep(0.5)
        assert not waiter.done()
        waiter.cancel()
        await asyncio.sleep(0)
        # A leaked window entry or sender turn would push this to t=2; a leaked
        # lock would never let it start (Deadlock).
        return await request(limits, [], sender)

    assert run_virtual(main) == expected, case


# --- metrics ---------------------------------------------------------------------


def test_counts_waits_and_time_waited() -> None:
    async def main() -> tuple[int, float, int, float]:
        limits = limiter(rate=Rate(1, 1.0))
        await request(limits, [])
        waits_uncontended, seconds_uncontended = limits.waits, limits.wait_seconds
        await requests_at_once(limits, [None, None, None])  # at t=1, 2 and 3
        return waits_uncontended, seconds_uncontended, limits.waits, limits.wait_seconds

    # The first of the three waits 1 s for the first request's window, then 2 s, 3 s.
    assert run_virtual(main) == (0, 0.0, 3, 6.0)


def test_time_waited_is_counted_from_each_arrival() -> None:
    async def main() -> tuple[int, float]:
        limits = limiter(rate=Rate(1, 1.0))
        await request(limits, [])  # t=0; the window is full until t=1
        await asyncio.sleep(0.75)
        await request(limits, [])  # arrives at 0.75, starts at 1
        return limits.waits, limits.wait_seconds

    assert run_virtual(main) == (1, 0.25)


@pytest.mark.parametrize(
    ("case", "make_limiter", "sender"),
    [
        ("waiting for room in the window", lambda: limiter(rate=Rate(1, 1.0)), None),
        ("waiting for its sender's turn", lambda: limiter(per_sender_mps=1.0), "A"),
    ],
)
def test_a_cancelled_wait_counts_in_the_wait_metrics(
    case: str, make_limiter: Callable[[], AccountLimiter], sender: str | None
) -> None:
    # A send cancelled while it waits (shutdown, a lease lost) still spent that time
    # blocked: sms_adapter_rate_limit_wait_seconds must show it.
    async def main() -> tuple[int, float]:
        limits = make_limiter()
        await request(limits, [], sender)
        await asyncio.sleep(0.25)
        waiter = asyncio.create_task(request(limits, [], sender))
        await asyncio.sleep(0.5)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        return limits.waits, limits.wait_seconds

    assert run_virtual(main) == (1, 0.5), case


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # Held at the concurrency cap until the one slot frees at t=0.5.
        ("concurrency", (1, 0.5)),
        # The second request queues behind the first, which waits out a pause to t=1;
        # then it may start at once: both waited, one second each.
        ("queue behind a pause", (2, 2.0)),
        # A's third text, queued behind the second, is cancelled at t=0.5; the second
        # waits its turn until t=1.
        ("cancelled in its sender's queue", (2, 1.5)),
    ],
)
def test_every_kind_of_wait_is_counted(case: str, expected: tuple[int, float]) -> None:
    async def main() -> tuple[int, float]:
        if case == "concurrency":
            limits = limiter(max_concurrency=1)
            holder = asyncio.create_task(request(limits, [], hold=0.5))
            await asyncio.sleep(0)
            await request(limits, [])
            await holder
        elif case == "queue behind a pause":
            limits = limiter()
            limits.slow_down(1.0)
            await requests_at_once(limits, [None, None])
        else:
            limits = limiter(per_sender_mps=1.0)
            await request(limits, [], "A")
            second = asyncio.create_task(request(limits, [], "A"))
            third = asyncio.create_task(request(limits, [], "A"))
            await asyncio.sleep(0.5)
            third.cancel()
            await asyncio.gather(second, third, return_exceptions=True)
        return limits.waits, limits.wait_seconds

    assert run_virtual(main) == expected, case


# --- settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1200/60s", Rate(1200, 60.0)),
        ("100/1s", Rate(100, 1.0)),
        ("10/s", Rate(10, 1.0)),
        ("5/500ms", Rate(5, 0.5)),
        ("600/1m", Rate(600, 60.0)),
        ("30/m", Rate(30, 60.0)),
        ("30/60", Rate(30, 60.0)),
        (" 20 / 2s ", Rate(20, 2.0)),
    ],
)
def test_parse_rate(text: str, expected: Rate) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "1200", "/60s", "1200/", "0/1s", "-1/1s", "1.5/1s", "10/0s", "10/xs", "10/1s/2",
     "ten/s", "10/1 s", "10/-1s"],
)  # fmt: skip
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate") as raised:
        parse_rate(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Rate(0, 1.0), "at least 1"),
        (lambda: Rate(5, 0.0), "positive"),
        (lambda: AccountLimiter(max_concurrency=0, rate=UNLIMITED_RATE), "max_concurrency"),
        (
            lambda: AccountLimiter(max_concurrency=1, rate=UNLIMITED_RATE, per_sender_mps=0),
            "per_sender_mps",
        ),
    ],
)
def test_rejects_nonsense_limits(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# --- a sender's budget, as Twilio counts it ----------------------------------------


@pytest.mark.parametrize(
    ("mps", "hold", "total"),
    [(1.0, 0.05, 20), (2.0, 0.4, 20), (10.0, 0.05, 200), (0.5, 0.1, 6)],
)
def test_a_senders_budget_holds_at_twilio_and_is_used(mps: float, hold: float, total: int) -> None:
    async def main() -> list[tuple[float, float]]:
        limits = limiter(per_sender_mps=mps)
        spans: list[tuple[float, float]] = []
        await asyncio.gather(*(spanned_request(limits, spans, hold, "A") for _ in range(total)))
        return spans

    spans = run_virtual(main)
    # However the network spreads arrivals, no second holds more than the budget.
    assert_arrivals_respected(spans, Rate(max(1, int(mps)), max(1, int(mps)) / mps))
    assert_arrivals_respected(spans, Rate(math.ceil(mps), 1.0))
    starts = sorted(start for start, _ in spans)
    used = (len(starts) - 1) / (starts[-1] - starts[0])
    if hold <= 0.1 / mps * max(1, int(mps)):
        assert used >= 0.9 * mps
