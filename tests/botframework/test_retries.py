"""A bot that is down, failing or slow: its texts are posted again with backoff, in order,
and never once the bot has answered, so nobody gets an answer twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from adapter.cli.dev import create_dev_app
from adapter.runtime.channel import Channel
from adapter.runtime.settings import Settings
from tests.botframework.fake_bot import FakeBot, reply
from tests.processes import free_port
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"


@dataclass
class Adapter:
    base: str
    channel: Channel
    http: httpx.AsyncClient

    async def text(self, body: str) -> None:
        answer = await self.http.post(
            f"{self.base}/_emulator/inbound", data={"From": PERSON, "Body": body}
        )
        assert answer.json()["webhook_status"] == 200

    async def sms_bodies(self) -> list[str]:
        response = await self.http.get(f"{self.base}/_emulator/messages", params={"to": PERSON})
        return [m["body"] for m in response.json()]

    async def all_texts_handled(self) -> None:
        """Wait until no text is left to post: after this no post is ever made again."""

        async def none_pending() -> bool:
            return await self.channel.store.pending_inbound_count() == 0

        await wait_for(none_pending, timeout=20)


@contextlib.asynccontextmanager
async def adapter_for(endpoint: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Adapter]:
    sock, base = bound_socket()
    dev = create_dev_app(
        Settings(
            database=str(tmp_path / "adapter.sqlite3"), bots=f"botframework+{endpoint}", **settings
        ),
        base,
    )
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as http:
        yield Adapter(base, dev.app.state.channel, http)


def logged(caplog: pytest.LogCaptureFixture, fragment: str) -> bool:
    """Whether a log line (or the traceback of one) says `fragment`."""
    return fragment in caplog.text


async def test_texts_wait_for_a_bot_that_is_down_and_reach_it_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    port = free_port()  # nothing listens here yet: the bot is down
    bot = FakeBot()
    async with adapter_for(f"http://127.0.0.1:{port}/api/messages", tmp_path) as adapter:
        await adapter.text("one")
        await adapter.text("two")
        await wait_for(lambda: logged(caplog, "will handle activity"))

        async with bot.running(port):
            await adapter.all_texts_handled()
            await wait_for(lambda: len(bot.activities) == 2)
            bodies = await wait_for(lambda: _at_least(adapter.sms_bodies(), 2))

    assert [a["text"] for a in bot.activities] == ["one", "two"]
    assert bodies == ["Echo: one", "Echo: two"]


async def test_a_text_the_bot_failed_on_without_answering_is_posted_again(
    tmp_path: Path,
) -> None:
    bot = FakeBot()
    answers = iter([Response(status_code=503), None])

    async def unavailable_once(activity: dict[str, Any]) -> Response:
        return next(answers) or await bot.echo(activity)

    bot.behaviour = unavailable_once
    async with bot.running() as endpoint, adapter_for(endpoint, tmp_path) as adapter:
        await adapter.text("hello")
        await adapter.all_texts_handled()
        bodies = await wait_for(lambda: _at_least(adapter.sms_bodies(), 1))

    assert [a["text"] for a in bot.activities] == ["hello", "hello"]
    assert len({a["id"] for a in bot.activities}) == 1  # the same activity, again
    assert bodies == ["Echo: hello"]


async def test_a_bot_that_answered_and_then_failed_is_not_posted_to_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bot = FakeBot()

    async def answer_then_fail(activity: dict[str, Any]) -> Response:
        await reply(activity, {"type": "message", "text": "Answer"})
        return Response("boom", status_code=500)

    bot.behaviour = answer_then_fail
    async with bot.running() as endpoint, adapter_for(endpoint, tmp_path) as adapter:
        await adapter.text("hello")
        await adapter.all_texts_handled()
        bodies = await wait_for(lambda: _at_least(adapter.sms_bodies(), 1))

    assert len(bot.activities) == 1
    assert bodies == ["Answer"]
    assert logged(caplog, "not posted again")


async def test_a_slow_bot_that_answers_late_is_not_posted_to_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bot = FakeBot()
    go_on = asyncio.Event()

    async def slow(activity: dict[str, Any]) -> Response:
        await go_on.wait()
        return await bot.echo(activity)

    bot.behaviour = slow
    async with (
        bot.running() as endpoint,
        adapter_for(endpoint, tmp_path, botframework_timeout=1.0) as adapter,
    ):
        await adapter.text("hello")
        # The post timed out; the bot answers well within the time it is given to.
        await wait_for(lambda: logged(caplog, "did not answer in time"))
        go_on.set()
        await adapter.all_texts_handled()
        bodies = await wait_for(lambda: _at_least(adapter.sms_bodies(), 1))

    assert len(bot.activities) == 1
    assert bodies == ["Echo: hello"]


async def test_a_text_the_bot_refuses_is_not_posted_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bot = FakeBot()

    async def refuse(activity: dict[str, Any]) -> Response:
        return Response("Unauthorized", status_code=401)

    bot.behaviour = refuse
    async with bot.running() as endpoint, adapter_for(endpoint, tmp_path) as adapter:
        await adapter.text("hello")
        await adapter.all_texts_handled()
        bodies = await adapter.sms_bodies()

    assert len(bot.activities) == 1
    assert bodies == []
    assert logged(caplog, "refused activity") and logged(caplog, "auth mode")


async def test_a_bot_down_for_longer_than_the_send_max_age_is_given_up_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/api/messages"  # never comes up
    async with adapter_for(endpoint, tmp_path, send_max_age="1s") as adapter:
        await adapter.text("hello")
        await adapter.all_texts_handled()

    assert logged(caplog, "giving up on activity")


async def _at_least(bodies: Any, count: int) -> list[str] | None:
    found: list[str] = await bodies
    return found if len(found) >= count else None
