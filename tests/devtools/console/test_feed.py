from __future__ import annotations

import asyncio
import threading

from adapter.devtools.console.feed import LiveFeed


def test_a_reader_gets_what_came_after_its_last_event_in_order() -> None:
    feed = LiveFeed()
    for n in range(1, 4):
        feed.publish("message", {"n": n})
    catchup = feed.since(1)
    assert [(e.seq, e.data["n"]) for e in catchup.events] == [(2, 2), (3, 3)]
    assert not catchup.gap
    assert feed.since(3).events == []


def test_a_reader_further_behind_than_the_feed_keeps_is_told_of_the_gap() -> None:
    feed = LiveFeed(capacity=3)
    for n in range(5):
        feed.publish("message", {"n": n})
    assert feed.since(1).gap  # event 2 is gone
    assert not feed.since(2).gap
    assert [e.seq for e in feed.since(2).events] == [3, 4, 5]


def test_event_ids_of_another_feed_are_not_taken_for_ours() -> None:
    feed, other = LiveFeed(), LiveFeed()
    assert feed.seq_of(feed.event_id(7)) == 7
    assert feed.seq_of(other.event_id(7)) is None
    assert feed.seq_of(None) is None
    assert feed.seq_of(f"{feed.epoch}-x") is None


async def test_a_waiting_reader_wakes_when_another_thread_publishes() -> None:
    feed = LiveFeed()
    waiting = asyncio.create_task(feed.wait(0, timeout=30))
    await asyncio.sleep(0)  # let it start waiting
    publisher = threading.Thread(target=feed.publish, args=("message", {"n": 1}))
    publisher.start()
    async with asyncio.timeout(10):
        catchup = await waiting
    publisher.join()
    assert [e.data for e in catchup.events] == [{"n": 1}]


async def test_a_wait_with_nothing_new_returns_empty_after_its_timeout() -> None:
    feed = LiveFeed()
    feed.publish("message", {})
    catchup = await feed.wait(1, timeout=0.01)
    assert catchup.events == [] and not catchup.gap and catchup.last_seq == 1
