"""No text lost when the webhook fails: the adapter is stopped, people text it through
the emulator meanwhile (each webhook fails: nobody listens), the adapter starts again and
finds those texts through List Messages.

Real processes (`sms-adapter emulator`, `sms-adapter serve`) on loopback, as in
tests/test_crash.py; the fleet case runs two replicas on one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from adapter.delivery.dispatcher import TOO_OLD
from tests.postgres_db import fresh_schema
from tests.processes import Account, Service, adapter_process, emulator_process, free_port
from tests.servers import wait_for

ACCOUNT = Account(sid="AC" + "c0" * 16, auth_token="catch-up-test-token-7e1")
OURS = "+15005550006"
PEOPLE = [f"+1555300{n:04d}" for n in range(3)]
TEXTS_EACH = 4


@contextlib.contextmanager
def stopped_on_exit(*services: Service) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for service in services:
            print(f"--- {service.name} ({service.log_path.name}):\n{service.log_tail()}")
        raise
    finally:
        for service in services:
            service.stop()


async def text(client: httpx.AsyncClient, emulator: Service, person: str, body: str) -> Any:
    response = await client.post(
        f"{emulator.url}/_emulator/inbound", data={"From": person, "To": OURS, "Body": body}
    )
    response.raise_for_status()
    return response.json()


async def replies(client: httpx.AsyncClient, emulator: Service) -> dict[str, list[str]]:
    response = await client.get(f"{emulator.url}/_emulator/messages")
    response.raise_for_status()
    found: dict[str, list[str]] = {}
    for message in response.json():  # oldest first
        if message["direction"].startswith("outbound"):
            found.setdefault(message["to"], []).append(message["body"])
    return found


async def readiness(client: httpx.AsyncClient, adapter: Service) -> Any:
    return (await client.get(f"{adapter.url}/readyz")).json()


async def watermark_set(client: httpx.AsyncClient, adapter: Service) -> bool:
    details = await readiness(client, adapter)
    return details["catchup"]["watermark"] is not None


async def inbound_metric(client: httpx.AsyncClient, adapter: Service, result: str) -> float:
    body = (await client.get(f"{adapter.url}/metrics")).text
    line = f'sms_adapter_inbound_texts_total{{result="{result}"}} '
    [value] = [row.removeprefix(line) for row in body.splitlines() if row.startswith(line)]
    return float(value)


async def text_while_down(client: httpx.AsyncClient, emulator: Service) -> dict[str, list[str]]:
    """Each person's texts, sent while no adapter listens: every webhook fails."""
    sent: dict[str, list[str]] = {person: [] for person in PEOPLE}
    for n in range(TEXTS_EACH):
        for person in PEOPLE:
            body = f"{person} says {n}"
            answer = await text(client, emulator, person, body)
            assert answer["webhook_status"] is None, answer  # Twilio keeps it, received
            sent[person].append(body)
    return sent


async def test_texts_sent_while_the_adapter_was_stopped_are_answered_once_in_order(
    tmp_path: Path,
) -> None:
    emulator_port, adapter_port = free_port(), free_port()
    emulator = emulator_process(
        emulator_port,
        account=ACCOUNT,
        webhook_url=f"http://127.0.0.1:{adapter_port}/api/sms",
        numbers=[OURS],
        log_dir=tmp_path,
    )
    # The default route: catch-up finds our number among the account's, by its webhook.
    adapter = adapter_process(
        adapter_port,
        account=ACCOUNT,
        twilio_base_url=emulator.url,
        database=tmp_path / "adapter.sqlite3",
        bots="bots.echo:router",
        log_dir=tmp_path,
    )
    with stopped_on_exit(adapter, emulator):
        async with asyncio.timeout(90), httpx.AsyncClient(timeout=10) as client:
            emulator.start()
            adapter.start()
            await asyncio.gather(emulator.wait_ready(), adapter.wait_ready())
            await wait_for(lambda: watermark_set(client, adapter), timeout=20)
            adapter.stop()

            sent = await text_while_down(client, emulator)
            adapter.start()
            await adapter.wait_ready()
            # Arrives by webhook while the first catch-up round runs: it goes after the
            # texts its sender sent while the adapter was down.
            late_comer = f"{PEOPLE[0]} is back"
            assert (await text(client, emulator, PEOPLE[0], late_comer))["webhook_status"] == 200
            sent[PEOPLE[0]].append(late_comer)

            total = sum(len(bodies) for bodies in sent.values())
            await wait_for(
                lambda: _count_replies(client, emulator, total), timeout=30, interval=0.1
            )
            await asyncio.sleep(1.0)  # time for a doubled reply to show
            got = await replies(client, emulator)
            assert await inbound_metric(client, adapter, "caught_up") == total - 1
            assert await inbound_metric(client, adapter, "accepted") == 1

    for person, bodies in sent.items():
        assert got[person] == [f"You said: {body}" for body in bodies], person


async def _count_replies(client: httpx.AsyncClient, emulator: Service, total: int) -> bool:
    return sum(len(bodies) for bodies in (await replies(client, emulator)).values()) >= total


async def test_a_text_older_than_the_age_limit_is_recorded_but_not_answered(
    tmp_path: Path,
) -> None:
    emulator_port, adapter_port = free_port(), free_port()
    database = tmp_path / "adapter.sqlite3"
    emulator = emulator_process(
        emulator_port,
        account=ACCOUNT,
        webhook_url=f"http://127.0.0.1:{adapter_port}/api/sms",
        numbers=[OURS],
        log_dir=tmp_path,
    )
    adapter = adapter_process(
        adapter_port,
        account=ACCOUNT,
        twilio_base_url=emulator.url,
        database=database,
        bots=f"{OURS}=bots.echo:router",
        log_dir=tmp_path,
        settings={"SMS_ADAPTER_CATCHUP_MAX_AGE": "2s"},
    )
    with stopped_on_exit(adapter, emulator):
        async with asyncio.timeout(60), httpx.AsyncClient(timeout=10) as client:
            emulator.start()
            adapter.start()
            await asyncio.gather(emulator.wait_ready(), adapter.wait_ready())
            await wait_for(lambda: watermark_set(client, adapter), timeout=20)
            adapter.stop()

            old = await text(client, emulator, PEOPLE[0], "are you there?")
            assert old["webhook_status"] is None
            await asyncio.sleep(3.0)  # older than SMS_ADAPTER_CATCHUP_MAX_AGE now
            adapter.start()
            await adapter.wait_ready()
            await wait_for(
                lambda: _last_round(client, adapter, "too_old"), timeout=20, interval=0.1
            )
            fresh = await text(client, emulator, PEOPLE[0], "hello again")
            assert fresh["webhook_status"] == 200
            await wait_for(lambda: _count_replies(client, emulator, 1), timeout=20, interval=0.1)
            await asyncio.sleep(0.5)
            got = await replies(client, emulator)
            assert await inbound_metric(client, adapter, "too_old") == 1
            assert await inbound_metric(client, adapter, "caught_up") == 0

    assert got == {PEOPLE[0]: ["You said: hello again"]}
    uri = f"file:{database}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        row = db.execute(
            "SELECT state, error FROM inbound WHERE message_id = ?", (old["sid"],)
        ).fetchone()
    assert row == ("done", TOO_OLD)


async def _last_round(client: httpx.AsyncClient, adapter: Service, result: str) -> bool:
    last = (await readiness(client, adapter))["catchup"]["last_round"]
    return last is not None and last[result] >= 1


async def test_a_postgres_fleet_of_two_answers_each_text_once_in_order(tmp_path: Path) -> None:
    async with fresh_schema("catchup_fleet") as database:
        emulator_port, ports = free_port(), [free_port(), free_port()]
        emulator = emulator_process(
            emulator_port,
            account=ACCOUNT,
            webhook_url=f"http://127.0.0.1:{ports[0]}/api/sms",
            numbers=[OURS],
            log_dir=tmp_path,
        )
        fleet = []
        for n, port in enumerate(ports):
            log_dir = tmp_path / f"replica-{n}"
            log_dir.mkdir()
            fleet.append(
                adapter_process(
                    port,
                    account=ACCOUNT,
                    twilio_base_url=emulator.url,
                    database=tmp_path / "unused",
                    bots=f"{OURS}=bots.echo:router",
                    log_dir=log_dir,
                    settings={"SMS_ADAPTER_DATABASE": database, "SMS_ADAPTER_LOG_LEVEL": "info"},
                )
            )
        with stopped_on_exit(*fleet, emulator):
            async with asyncio.timeout(120), httpx.AsyncClient(timeout=10) as client:
                emulator.start()
                for replica in fleet:
                    replica.start()
                await asyncio.gather(emulator.wait_ready(), *(r.wait_ready() for r in fleet))
                await wait_for(lambda: watermark_set(client, fleet[0]), timeout=20)
                for replica in fleet:
                    replica.stop()

                sent = await text_while_down(client, emulator)
                for replica in fleet:
                    replica.start()
                await asyncio.gather(*(r.wait_ready() for r in fleet))
                total = sum(len(bodies) for bodies in sent.values())
                await wait_for(
                    lambda: _count_replies(client, emulator, total), timeout=40, interval=0.1
                )
                await asyncio.sleep(1.0)
                got = await replies(client, emulator)
                caught_up = [await inbound_metric(client, r, "caught_up") for r in fleet]

        for person, bodies in sent.items():
            assert got[person] == [f"You said: {body}" for body in bodies], person
        # One replica at a time lists: together they found each text exactly once.
        assert sum(caught_up) == total
