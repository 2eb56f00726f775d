"""Kill -9 the adapter mid-stream: every acknowledged text still gets exactly one reply.

The emulator and the adapter run as separate processes (`sms-adapter emulator`,
`sms-adapter serve` configured from the environment). People text through the
emulator; while replies are in flight the adapter is SIGKILLed and started again on the
same database and port. Texts whose webhook failed meanwhile are delivered again with
the same MessageSid, as Twilio retries them. Then, once the adapter's queues are empty,
the emulator must hold exactly one reply per text, in order within each conversation.

The test peeks at the adapter's SQLite file read-only to pick the moment of the kill (a
send recorded as started and not yet answered) and to know when the queues are empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.processes import Account, adapter_process, emulator_process, free_port
from tests.servers import wait_for

ACCOUNT = Account(sid="AC" + "3" * 32, auth_token="durability-crash-token-91c4")
OURS = "+15005550006"
PEOPLE = [f"+1555700{n:04d}" for n in range(6)]
TEXTS_EACH = 50  # 300 texts in all
# Every reply carries send options: the crash must not lose them.
ROUTES_WITH_SEND_OPTIONS = """
[[routes]]
default = true
bot = "bots.echo:router"

[routes.send]
validity_period = 3600
smart_encoded = true
"""
REDELIVERY_PAUSE = 0.05  # seconds between webhook retries while the adapter is down


@dataclass
class Progress:
    acknowledged: int = 0  # texts whose webhook the adapter answered 200
    redelivered: int = 0  # texts that needed a second delivery to be answered


def _count(database: Path, query: str) -> int:
    """A read-only look at the adapter's store, safe while the adapter writes."""
    uri = f"file:{database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
        return int(db.execute(query).fetchone()[0])


def sends_in_doubt(database: Path) -> int:
    """Sends recorded as started that have no answer yet."""
    return _count(
        database,
        "SELECT count(*) FROM outbound WHERE state = 'pending' AND in_doubt_since IS NOT NULL",
    )


def unfinished_work(database: Path) -> int:
    return _count(
        database,
        "SELECT (SELECT count(*) FROM inbound WHERE state = 'pending')"
        " + (SELECT count(*) FROM outbound WHERE state = 'pending')",
    )


def given_up(database: Path) -> int:
    return _count(database, "SELECT count(*) FROM outbound WHERE state IN ('failed', 'dead')")


async def text_until_acknowledged(
    client: httpx.AsyncClient, emulator: str, person: str, texts: list[str], progress: Progress
) -> None:
    """One person texting, each text only after the previous one was acknowledged."""
    for text in texts:
        answer = await _inbound(client, emulator, {"From": person, "To": OURS, "Body": text})
        if answer["webhook_status"] != 200:
            progress.redelivered += 1
        while answer["webhook_status"] != 200:
            await asyncio.sleep(REDELIVERY_PAUSE)
            answer = await _inbound(client, emulator, {"MessageSid": answer["sid"]})
        progress.acknowledged += 1


async def _inbound(client: httpx.AsyncClient, emulator: str, form: dict[str, str]) -> Any:
    response = await client.post(f"{emulator}/_emulator/inbound", data=form)
    response.raise_for_status()
    return response.json()


async def replies_by_person(client: httpx.AsyncClient, emulator: str) -> dict[str, list[str]]:
    response = await client.get(f"{emulator}/_emulator/messages")
    response.raise_for_status()
    replies: dict[str, list[str]] = {}
    for message in response.json():  # oldest first
        if message["direction"].startswith("outbound"):
            replies.setdefault(message["to"], []).append(message["body"])
            # The route's send options survived the outbox and the kill with each reply.
            assert message.get("smart_encoded") is True, message
            assert 1 <= message.get("validity_period", 0) <= 3600, message
    return replies


async def test_every_acknowledged_text_gets_exactly_one_reply_across_a_kill(
    tmp_path: Path,
) -> None:
    emulator_port, adapter_port = free_port(), free_port()
    database = tmp_path / "adapter.sqlite3"
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES_WITH_SEND_OPTIONS)
    emulator = emulator_process(
        emulator_port,
        account=ACCOUNT,
        webhook_url=f"http://127.0.0.1:{adapter_port}/api/sms",
        numbers=[OURS],
        latency_ms=20,  # so that sends are in flight when the kill comes
        log_dir=tmp_path,
    )
    adapter = adapter_process(
        adapter_port,
        account=ACCOUNT,
        twilio_base_url=emulator.url,
        database=database,
        bots="bots.echo:router",
        log_dir=tmp_path,
        config=routes,
    )
    texts = {person: [f"{person} says {n}" for n in range(TEXTS_EACH)] for person in PEOPLE}
    total = len(PEOPLE) * TEXTS_EACH
    progress = Progress()
    try:
        async with asyncio.timeout(60), httpx.AsyncClient(timeout=30) as client:
            emulator.start()
            adapter.start()
            await asyncio.gather(emulator.wait_ready(), adapter.wait_ready())
            people = [
                asyncio.create_task(
                    text_until_acknowledged(client, emulator.url, p, texts[p], progress)
                )
                for p in PEOPLE
            ]
            try:
                await wait_for(
                    lambda: progress.acknowledged >= total // 3 and sends_in_doubt(database) >= 2,
                    timeout=30,
                    interval=0.005,
                )
                adapter.kill()
                in_doubt_at_kill = sends_in_doubt(database)
                adapter.start()
                await adapter.wait_ready()
                await asyncio.gather(*people)
            finally:
                for task in people:
                    task.cancel()
            await wait_for(lambda: unfinished_work(database) == 0, timeout=30)
            replies = await replies_by_person(client, emulator.url)
    except BaseException:
        print(f"adapter log:\n{adapter.log_tail()}\n\nemulator log:\n{emulator.log_tail()}")
        raise
    finally:
        adapter.stop()
        emulator.stop()

    print(f"in doubt at the kill: {in_doubt_at_kill}, redelivered texts: {progress.redelivered}")
    # The kill really came mid-send and mid-conversation.
    assert in_doubt_at_kill >= 1
    assert progress.redelivered >= 1
    assert progress.acknowledged == total
    assert given_up(database) == 0
    for person in PEOPLE:
        assert replies.get(person) == [f"You said: {text}" for text in texts[person]], person
