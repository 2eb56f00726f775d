"""The exchange log: what it keeps of each webhook and REST call, and what it never keeps."""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from adapter.devtools.console.exchange_log import (
    ExchangeLog,
    ExchangeLogMiddleware,
    kind_of,
    signature_result,
)
from adapter.devtools.emulator import EmulatorState, create_emulator_app, parse_faults
from adapter.logs import REDACTED
from tests.devtools.emulator.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES,
    OUR_NUMBER,
    PERSON,
    make_config,
)
from tests.servers import bound_socket, serve

SECRET = "s3cret/token+with=odd&chars"


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse({"echo": body.decode()}, status_code=201)


async def forbidden(request: Request) -> Response:
    return PlainTextResponse("invalid Twilio signature", status_code=403)


async def other(request: Request) -> Response:
    return PlainTextResponse("not logged")


def logged_app(log: ExchangeLog) -> Starlette:
    app = Starlette(
        routes=[
            Route("/2010-04-01/Accounts/AC1/Messages.json", echo, methods=["POST"]),
            Route("/api/sms", forbidden, methods=["POST"]),
            Route("/api/sms/status", echo, methods=["POST"]),
            Route("/healthz", other),
        ]
    )
    app.add_middleware(ExchangeLogMiddleware, log=log)
    return app


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/api/sms", "webhook"),
        ("/api/sms/status", "status callback"),
        ("/2010-04-01/Accounts/AC1/Messages.json", "REST"),
        ("/api/smsx", None),
        ("/console/api/events", None),
        ("/_emulator/inbound", None),
    ],
)
def test_only_twilio_traffic_is_logged(path: str, kind: str | None) -> None:
    assert kind_of(path) == kind


@pytest.mark.parametrize(
    ("kind", "status", "checked", "expected"),
    [
        ("webhook", 200, True, "valid"),
        ("status callback", 204, True, "valid"),
        ("webhook", 403, True, "rejected"),
        ("webhook", 415, True, "unknown"),
        ("webhook", 200, False, "not checked"),
        ("REST", 201, True, None),
    ],
)
def test_the_signature_result_is_read_from_the_answer(
    kind: str, status: int, checked: bool, expected: str | None
) -> None:
    assert signature_result(kind, status, checked) == expected


async def test_each_call_is_kept_with_status_bodies_and_no_secret() -> None:
    basic = base64.b64encode(f"{ACCOUNT_SID}:{SECRET}".encode()).decode()
    log = ExchangeLog([SECRET, quote(SECRET, safe=""), basic])
    async with client_for(logged_app(log)) as client:
        await client.post(
            "/2010-04-01/Accounts/AC1/Messages.json",
            data={"Body": f"the token is {SECRET}", "To": PERSON},
            headers={"Authorization": f"Basic {basic}", "X-Debug": SECRET},
        )
        await client.post("/api/sms", data={"Body": "forged"})
        await client.get("/healthz")

    rest, webhook = log.entries()
    assert (rest.kind, rest.method, rest.status, rest.signature) == ("REST", "POST", 201, None)
    assert (webhook.kind, webhook.status, webhook.signature) == ("webhook", 403, "rejected")
    assert webhook.response_body == "invalid Twilio signature"
    assert ("authorization", f"Basic {REDACTED}") in rest.request_headers
    assert ("x-debug", REDACTED) in rest.request_headers
    assert "To=%2B15551234567" in rest.request_body
    assert rest.duration_ms is not None and rest.duration_ms >= 0
    kept = str([e.to_json() for e in log.entries()])
    assert SECRET not in kept and quote(SECRET, safe="") not in kept and basic not in kept
    assert kept.count(REDACTED) >= 4


async def test_bodies_are_capped_and_say_so() -> None:
    log = ExchangeLog(body_limit=100)
    async with client_for(logged_app(log)) as client:
        await client.post("/api/sms/status", content=b"x" * 1000)
    [entry] = log.entries()
    assert entry.request_body.startswith("x" * 100)
    assert "more bytes not kept" in entry.request_body
    assert len(entry.request_body) < 200


async def test_only_the_newest_exchanges_are_kept_and_each_is_announced() -> None:
    announced: list[int] = []
    log = ExchangeLog(capacity=3, on_record=lambda e: announced.append(e.id))
    async with client_for(logged_app(log)) as client:
        for _ in range(5):
            await client.post("/api/sms/status", content=b"{}")
    assert [e.id for e in log.entries()] == [3, 4, 5]
    assert announced == [1, 2, 3, 4, 5]
    assert log.get(1) is None and log.get(5) is not None


async def test_the_emulators_dropped_connection_still_drops_through_the_log() -> None:
    """The `drop` fault finds uvicorn's connection through the closures wrapping `send`;
    the log's wrapper must keep that path open."""
    state = EmulatorState()
    log = ExchangeLog([AUTH_TOKEN])
    app = create_emulator_app(make_config(faults=parse_faults("drop=1")), state)
    app.add_middleware(ExchangeLogMiddleware, log=log)
    sock, base = bound_socket()
    async with serve(app, sock):
        async with httpx.AsyncClient(base_url=base, auth=(ACCOUNT_SID, AUTH_TOKEN)) as client:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await client.post(MESSAGES, data={"To": PERSON, "From": OUR_NUMBER, "Body": "x"})
    await state.aclose()
    [entry] = log.entries()
    assert entry.kind == "REST" and entry.response_body == ""


async def test_a_failing_app_is_still_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Request) -> Response:
        await request.body()
        raise RuntimeError("boom")

    log = ExchangeLog()
    app = Starlette(routes=[Route("/api/sms", broken, methods=["POST"])])
    app.add_middleware(ExchangeLogMiddleware, log=log)
    caplog.set_level(logging.CRITICAL)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/api/sms", content=b"Body=hi")
    assert response.status_code == 500
    [entry] = log.entries()
    assert (entry.status, entry.request_body) == (500, "Body=hi")
