"""Injected faults on Send Message: 429, 500, dropped connections, slow answers."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from adapter.devtools.emulator import (
    EmulatorState,
    Fault,
    Faults,
    create_emulator_app,
    parse_faults,
)
from tests.devtools.emulator.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES,
    OUR_NUMBER,
    PERSON,
    make_config,
    running_emulator,
)
from tests.servers import bound_socket, serve

SEND = {"To": PERSON, "From": OUR_NUMBER, "Body": "hello"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param("", Faults(), id="empty"),
        pytest.param(
            "429=0.1,500=0.1,drop=0.05,slow=0.05",
            Faults(too_many_requests=0.1, server_error=0.1, drop=0.05, slow=0.05),
            id="all-four",
        ),
        pytest.param(
            " drop = 1 , slow_ms=250, seed=7 ", Faults(drop=1.0, slow_ms=250, seed=7), id="options"
        ),
        pytest.param(
            "429=0.7,500=0.3", Faults(too_many_requests=0.7, server_error=0.3), id="sum-1"
        ),
    ],
)
def test_parse_faults(spec: str, expected: Faults) -> None:
    assert parse_faults(spec) == expected


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        pytest.param("429", "'429'", id="no-value"),
        pytest.param("429=lots", "'429=lots'", id="not-a-number"),
        pytest.param("drop=1.5", "'drop=1.5'", id="above-one"),
        pytest.param("slow=-0.1", "'slow=-0.1'", id="negative"),
        pytest.param("500=nan", "'500=nan'", id="nan"),
        pytest.param("teapot=0.1", "'teapot'", id="unknown-fault"),
        pytest.param("429=0.1,429=0.2", "'429=0.2'", id="repeated"),
        pytest.param("seed=x", "'seed=x'", id="seed-not-integer"),
        pytest.param("429=0.6,500=0.6", "more than 1", id="sum-over-one"),
        pytest.param("slow_ms=-5", "slow_ms", id="negative-slow"),
    ],
)
def test_parse_faults_names_the_bad_item(spec: str, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_faults(spec)

    assert named in str(caught.value)


def test_seeded_faults_repeat_exactly() -> None:
    faults = parse_faults("429=0.2,500=0.2,drop=0.2,slow=0.2,seed=3")

    rng_a, rng_b = random.Random(faults.seed), random.Random(faults.seed)
    run_a = [faults.choose(rng_a) for _ in range(200)]
    run_b = [faults.choose(rng_b) for _ in range(200)]

    assert run_a == run_b
    assert set(run_a) == {None, *Fault}


@pytest.mark.parametrize(
    ("faults", "always"),
    [
        pytest.param(Faults(), None, id="none"),
        pytest.param(Faults(too_many_requests=1.0), Fault.TOO_MANY_REQUESTS, id="all-429"),
        pytest.param(Faults(drop=1.0), Fault.DROP, id="all-drop"),
    ],
)
def test_certain_faults(faults: Faults, always: Fault | None) -> None:
    rng = random.Random(0)
    assert {faults.choose(rng) for _ in range(100)} == {always}


async def test_429_refuses_every_send_with_retry_after() -> None:
    async with running_emulator(make_config(faults=parse_faults("429=1"))) as emulator:
        answers = [await emulator.client.post(MESSAGES, data=SEND) for _ in range(5)]
        listing = await emulator.client.get(MESSAGES)

    assert {(a.status_code, a.headers["retry-after"], a.json()["code"]) for a in answers} == {
        (429, "1", 20429)
    }
    assert emulator.state.messages() == []
    assert listing.status_code == 200  # reads are not faulted


async def test_500_creates_nothing() -> None:
    async with running_emulator(make_config(faults=parse_faults("500=1"))) as emulator:
        answer = await emulator.client.post(MESSAGES, data=SEND)

    assert (answer.status_code, answer.json()["code"], answer.json()["status"]) == (500, 20500, 500)
    assert emulator.state.messages() == []


async def test_slow_answers_still_create() -> None:
    async with running_emulator(make_config(faults=parse_faults("slow=1,slow_ms=1"))) as emulator:
        answer = await emulator.client.post(MESSAGES, data=SEND)

    assert answer.status_code == 201
    assert emulator.state.get(answer.json()["sid"]) is not None


async def test_seeded_faults_give_the_same_answers_twice() -> None:
    async def statuses() -> list[int]:
        config = make_config(faults=parse_faults("429=0.3,500=0.3,seed=11"))
        async with running_emulator(config) as emulator:
            return [
                (await emulator.client.post(MESSAGES, data=SEND)).status_code for _ in range(30)
            ]

    first, second = await statuses(), await statuses()

    assert first == second
    assert set(first) == {201, 429, 500}


async def test_drop_in_process_raises_what_httpx_raises_and_still_sends() -> None:
    async with running_emulator(make_config(faults=parse_faults("drop=1"))) as emulator:
        with pytest.raises(httpx.RemoteProtocolError):
            await emulator.client.post(MESSAGES, data=SEND)
        await emulator.state.settle()

    [message] = emulator.state.messages()
    assert (message.to, message.status) == (PERSON, "delivered")


def _mounted_like_dev_mode(emulator: Starlette) -> Starlette:
    async def healthz(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/healthz", healthz), Mount("/", app=emulator)])


@pytest.fixture(params=["alone", "mounted"])
async def dropping_server(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    state = EmulatorState()
    emulator = create_emulator_app(make_config(faults=parse_faults("drop=1")), state)
    app = emulator if request.param == "alone" else _mounted_like_dev_mode(emulator)
    sock, base_url = bound_socket()
    async with serve(app, sock):
        yield base_url
    await state.aclose()


async def test_drop_under_uvicorn_cuts_the_connection_after_creating(
    dropping_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    base_url = dropping_server
    caplog.set_level(logging.INFO, logger="uvicorn.error")

    async with httpx.AsyncClient(base_url=base_url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.post(MESSAGES, data=SEND)
        listed = (await client.get(MESSAGES)).json()["messages"]

    assert [m["to"] for m in listed] == [PERSON]
    # uvicorn saw a hang-up, not an app that forgot to answer.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_slow_answer_comes_after_the_text_exists() -> None:
    config = make_config(faults=parse_faults("slow=1,slow_ms=60000"))
    async with running_emulator(config) as emulator:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await emulator.client.post(MESSAGES, data=SEND)

        [message] = emulator.state.messages()

    assert message.to == PERSON


async def test_latency_holds_every_rest_answer() -> None:
    async with running_emulator(make_config(latency_ms=60000)) as emulator:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await emulator.client.get(MESSAGES)
