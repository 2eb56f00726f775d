"""TwilioClient against httpx.MockTransport, real loopback sockets, and twilio-python."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.base import deserialize as twilio_deserialize
from twilio.http import HttpClient as TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client as TwilioRestClient

from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.errors import (
    TwilioApiError,
    TwilioError,
    TwilioRateLimited,
    TwilioRequestRejected,
    TwilioServerError,
    TwilioTransportError,
)
from adapter.twilio.resources import MessageResource, format_rfc2822, parse_rfc2822
from tests.twilio.loopback import Handler as RawHandler
from tests.twilio.loopback import Request as ReceivedRequest
from tests.twilio.loopback import answering, loopback

ACCOUNT_SID = "AC" + "a" * 32
API_KEY_SID = "SK" + "b" * 32
AUTH_TOKEN = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
BASE_URL = "https://api.twilio.test"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
SERVICE_SID = "MG" + "c" * 32

Handler = Callable[[httpx.Request], httpx.Response]


def message_json(sid: str = "SM" + "0" * 32, **fields: Any) -> dict[str, Any]:
    """A Message as Twilio's API documents it (strings for counts, RFC 2822 dates)."""
    data: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": "Hello! 👍",
        "date_created": "Thu, 30 Jul 2015 20:12:31 +0000",
        "date_sent": "Thu, 30 Jul 2015 20:12:33 +0000",
        "date_updated": "Thu, 30 Jul 2015 20:12:33 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": "+14155552345",
        "messaging_service_sid": SERVICE_SID,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": None,
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media"},
        "to": "+14155552345",
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
    }
    data.update(fields)
    return data


@dataclass
class Recorder:
    """A MockTransport handler that answers from a list and keeps every request."""

    answers: list[httpx.Response | Exception]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        # A fresh copy, so one parametrized answer can serve several tests.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


@asynccontextmanager
async def twilio_with(
    handler: Handler,
    credentials: Credentials | None = None,
) -> AsyncIterator[TwilioClient]:
    credentials = credentials or Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with TwilioClient(credentials, BASE_URL, http=http) as twilio:
            yield twilio


def form_of(request: httpx.Request) -> list[tuple[str, str]]:
    return parse_qsl(request.content.decode("ascii"), keep_blank_values=True)


# --- Send Message -----------------------------------------------------------------


SEND_CASES = [
    pytest.param(
        {"to": "+15558675310", "from_": "+15017122661", "body": "Hi there"},
        [("To", "+15558675310"), ("From", "+15017122661"), ("Body", "Hi there")],
        id="from-number",
    ),
    pytest.param(
        {"to": "+15558675310", "messaging_service_sid": SERVICE_SID, "body": "Hi"},
        [("To", "+15558675310"), ("MessagingServiceSid", SERVICE_SID), ("Body", "Hi")],
        id="messaging-service-instead-of-from",
    ),
    pytest.param(
        {
            "to": "whatsapp:+15558675310",
            "from_": "whatsapp:+15017122661",
            "body": "two pictures",
            "media_urls": ["https://example.com/a.png", "https://example.com/b.jpg?x=1&y=2"],
        },
        [
            ("To", "whatsapp:+15558675310"),
            ("From", "whatsapp:+15017122661"),
            ("Body", "two pictures"),
            ("MediaUrl", "https://example.com/a.png"),
            ("MediaUrl", "https://example.com/b.jpg?x=1&y=2"),
        ],
        id="media-url-repeated-in-order",
    ),
    pytest.param(
        {
            "to": "+15558675310",
            "from_": "+15017122661",
            "body": "1 + 1 = 2 & ünïcødé 👍",
            "status_callback": "https://bot.example/status?conversation=1",
        },
        [
            ("To", "+15558675310"),
            ("From", "+15017122661"),
            ("Body", "1 + 1 = 2 & ünïcødé 👍"),
            ("StatusCallback", "https://bot.example/status?conversation=1"),
        ],
        id="status-callback-and-awkward-body",
    ),
]


@pytest.mark.parametrize(("arguments", "expected_form"), SEND_CASES)
async def test_send_posts_twilios_form(
    arguments: dict[str, Any], expected_form: list[tuple[str, str]]
) -> None:
    recorder = Recorder([httpx.Response(201, json=message_json())])
    async with twilio_with(recorder) as twilio:
        await twilio.send_message(**arguments)

    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == BASE_URL + MESSAGES_PATH
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(request) == expected_form


@pytest.mark.parametrize(("arguments", "_expected"), SEND_CASES)
async def test_send_matches_what_twilio_python_sends(
    arguments: dict[str, Any], _expected: object
) -> None:
    recorder = Recorder([httpx.Response(201, json=message_json())])
    async with twilio_with(recorder) as twilio:
        await twilio.send_message(**arguments)

    reference = ReferenceHttp(httpx.Response(201, json=message_json()))
    official = TwilioRestClient(ACCOUNT_SID, AUTH_TOKEN, http_client=reference)
    official.messages.create(
        to=arguments["to"],
        body=arguments["body"],
        from_=arguments.get("from_"),
        messaging_service_sid=arguments.get("messaging_service_sid"),
        media_url=arguments.get("media_urls"),
        status_callback=arguments.get("status_callback"),
    )

    (ours,) = recorder.requests
    theirs = reference.calls[0]
    assert (ours.method, str(ours.url)) == (
        theirs["method"],
        theirs["uri"].replace("https://api.twilio.com", BASE_URL),
    )
    assert sorted(form_of(ours)) == sorted(_pairs(theirs["data"]))


async def test_send_parses_twilios_answer() -> None:
    sid = "SM" + "1" * 32
    answer = message_json(sid, num_segments="2", num_media="1", price="-0.00750")
    async with twilio_with(Recorder([httpx.Response(201, json=answer)])) as twilio:
        sent = await twilio.send_message(to="+15558675310", from_="+15017122661", body="x")

    assert sent.sid == sid
    assert (sent.status, sent.num_segments, sent.num_media) == ("queued", 2, 1)
    assert sent.price == "-0.00750"
    assert sent.date_created == datetime(2015, 7, 30, 20, 12, 31, tzinfo=UTC)


async def test_send_needs_a_sender_and_makes_no_request_without_one() -> None:
    recorder = Recorder([])
    async with twilio_with(recorder) as twilio:
        with pytest.raises(ValueError, match="from_ or messaging_service_sid"):
            await twilio.send_message(to="+15558675310", body="orphan")
    assert recorder.requests == []


# --- Authentication and headers ----------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param(Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), id="auth-token"),
        pytest.param(Credentials(ACCOUNT_SID, API_KEY_SID, "key-secret-1234"), id="api-key"),
    ],
)
async def test_requests_use_basic_auth_and_the_account_in_the_path(
    credentials: Credentials,
) -> None:
    recorder = Recorder([httpx.Response(201, json=message_json())])
    async with twilio_with(recorder, credentials) as twilio:
        await twilio.send_message(to="+15558675310", from_="+15017122661", body="x")

    (request,) = recorder.requests
    pair = f"{credentials.username}:{credentials.password}".encode()
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(pair).decode()
    # With an API key the key authenticates, but the resource is still the account's.
    assert request.url.path == MESSAGES_PATH


async def test_requests_say_who_we_are_and_ask_for_json() -> None:
    recorder = Recorder([httpx.Response(200, json=message_json())])
    async with twilio_with(recorder) as twilio:
        await twilio.get_message("SM" + "0" * 32)

    (request,) = recorder.requests
    assert request.headers["User-Agent"].startswith("sms-adapter/")
    assert f"httpx/{httpx.__version__}" in request.headers["User-Agent"]
    assert request.headers["Accept"] == "application/json"


# --- Fetch ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sid", "expected_path"),
    [
        ("SM" + "1" * 32, f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM{'1' * 32}.json"),
        # A hostile "sid" stays one path segment instead of walking up the tree.
        ("../../Calls", f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/..%2F..%2FCalls.json"),
    ],
)
async def test_get_fetches_one_message_by_sid(sid: str, expected_path: str) -> None:
    recorder = Recorder([httpx.Response(200, json=message_json(status="delivered"))])
    async with twilio_with(recorder) as twilio:
        message = await twilio.get_message(sid)

    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.raw_path.decode() == expected_path
    assert message.status == "delivered"


# --- List ----------------------------------------------------------------------------


def page_json(sids: list[str], next_page_uri: str | None) -> dict[str, Any]:
    return {
        "messages": [message_json(sid) for sid in sids],
        "next_page_uri": next_page_uri,
        "page_size": 2,
        "start": 0,
        "end": len(sids) - 1,
    }


LISTED = f"{MESSAGES_PATH}?To=%2B15558675310&DateSent%3C=2024-03-06&PageSize=2"
NEXT_1 = f"{LISTED}&Page=1&PageToken=PA1"
NEXT_2 = f"{LISTED}&Page=2&PageToken=PA2"
THREE_PAGES = [
    httpx.Response(200, json=page_json(["SM1", "SM2"], NEXT_1)),
    httpx.Response(200, json=page_json(["SM3", "SM4"], NEXT_2)),
    httpx.Response(200, json=page_json(["SM5"], None)),
]


async def test_list_follows_next_page_uri_until_it_is_null() -> None:
    recorder = Recorder(list(THREE_PAGES))
    async with twilio_with(recorder) as twilio:
        found = [
            message.sid
            async for message in twilio.list_messages(
                to="+15558675310", date_sent_before=date(2024, 3, 6), page_size=2
            )
        ]

    assert found == ["SM1", "SM2", "SM3", "SM4", "SM5"]
    first, second, third = (str(request.url) for request in recorder.requests)
    assert first.startswith(BASE_URL + MESSAGES_PATH + "?")
    # Later pages are exactly Twilio's URI: it carries the filters and the page token.
    assert (second, third) == (BASE_URL + NEXT_1, BASE_URL + NEXT_2)


async def test_list_pages_yields_one_list_per_request() -> None:
    recorder = Recorder(list(THREE_PAGES))
    async with twilio_with(recorder) as twilio:
        sizes = [len(page) async for page in twilio.list_pages(to="+15558675310", page_size=2)]

    assert sizes == [2, 2, 1]
    assert len(recorder.requests) == 3


async def test_next_page_on_another_host_is_fetched_from_our_base_url() -> None:
    elsewhere = "https://collector.example" + NEXT_1
    recorder = Recorder(
        [
            httpx.Response(200, json=page_json(["SM1"], elsewhere)),
            httpx.Response(200, json=page_json(["SM2"], None)),
        ]
    )
    async with twilio_with(recorder) as twilio:
        _ = [message async for message in twilio.list_messages()]

    assert str(recorder.requests[1].url) == BASE_URL + NEXT_1


@pytest.mark.parametrize(
    ("filters", "expected_params"),
    [
        ({}, {"PageSize": "1000"}),
        ({"to": "+15558675310"}, {"To": "+15558675310", "PageSize": "1000"}),
        ({"from_": "+15017122661"}, {"From": "+15017122661", "PageSize": "1000"}),
        ({"date_sent": date(2024, 3, 5)}, {"DateSent": "2024-03-05", "PageSize": "1000"}),
        ({"date_sent_before": date(2024, 3, 6)}, {"DateSent<": "2024-03-06", "PageSize": "1000"}),
        ({"date_sent_after": date(2024, 3, 1)}, {"DateSent>": "2024-03-01", "PageSize": "1000"}),
        (
            {"date_sent_after": datetime(2024, 3, 1, 23, 59, tzinfo=UTC), "page_size": 50},
            {"DateSent>": "2024-03-01", "PageSize": "50"},
        ),
        (
            # 00:30 in Paris on 2 March is still 1 March in GMT, Twilio's day.
            {"date_sent_after": datetime(2024, 3, 2, 0, 30, tzinfo=timezone(timedelta(hours=1)))},
            {"DateSent>": "2024-03-01", "PageSize": "1000"},
        ),
    ],
)
async def test_list_sends_filters_under_twilios_names(
    filters: dict[str, Any], expected_params: dict[str, str]
) -> None:
    recorder = Recorder([httpx.Response(200, json=page_json([], None))])
    async with twilio_with(recorder) as twilio:
        _ = [message async for message in twilio.list_messages(**filters)]

    (request,) = recorder.requests
    assert dict(request.url.params) == expected_params


async def test_list_filter_names_match_twilio_python() -> None:
    day = date(2024, 3, 5)
    filters: dict[str, Any] = {
        "to": "+1",
        "from_": "+2",
        "date_sent": day,
        "date_sent_before": day,
        "date_sent_after": day,
    }
    recorder = Recorder([httpx.Response(200, json=page_json([], None))])
    async with twilio_with(recorder) as twilio:
        _ = [message async for message in twilio.list_messages(**filters)]

    reference = ReferenceHttp(httpx.Response(200, json=page_json([], None)))
    official = TwilioRestClient(ACCOUNT_SID, AUTH_TOKEN, http_client=reference)
    official.messages.list(**filters, page_size=1000)

    assert set(recorder.requests[0].url.params) == set(reference.calls[0]["params"])


@pytest.mark.parametrize("page_size", [0, -1, 1001])
def test_list_rejects_a_page_size_twilio_would_refuse(page_size: int) -> None:
    twilio = TwilioClient(Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), BASE_URL)
    # Raised by the call itself, before anything is iterated.
    with pytest.raises(ValueError, match="page_size"):
        twilio.list_messages(page_size=page_size)
    with pytest.raises(ValueError, match="page_size"):
        twilio.list_pages(page_size=page_size)


async def test_a_failing_page_stops_the_listing_after_the_pages_already_read() -> None:
    recorder = Recorder(
        [
            httpx.Response(200, json=page_json(["SM1", "SM2"], NEXT_1)),
            httpx.Response(503, text="upstream unavailable"),
        ]
    )
    seen: list[str] = []
    async with twilio_with(recorder) as twilio:
        with pytest.raises(TwilioServerError) as caught:
            async for message in twilio.list_messages():
                seen.append(message.sid)

    assert seen == ["SM1", "SM2"]
    assert caught.value.operation == "list"


# --- Failures ------------------------------------------------------------------------

Call = Callable[[TwilioClient], Awaitable[object]]


async def _send(twilio: TwilioClient) -> object:
    return await twilio.send_message(to="+15558675310", from_="+15017122661", body="x")


async def _get(twilio: TwilioClient) -> object:
    return await twilio.get_message("SM" + "0" * 32)


async def _list(twilio: TwilioClient) -> object:
    return [message async for message in twilio.list_messages()]


OPERATIONS = [
    pytest.param(_send, "send", id="send"),
    pytest.param(_get, "get", id="get"),
    pytest.param(_list, "list", id="list"),
]


@pytest.mark.parametrize(("call", "operation"), OPERATIONS)
@pytest.mark.parametrize(
    ("answer", "error_class", "retryable", "code", "retry_after"),
    [
        (
            httpx.Response(400, json={"code": 21211, "message": "Invalid 'To'", "status": 400}),
            TwilioRequestRejected,
            False,
            21211,
            None,
        ),
        (
            httpx.Response(
                429,
                json={"code": 20429, "message": "Too Many Requests", "status": 429},
                headers={"Retry-After": "3"},
            ),
            TwilioRateLimited,
            True,
            20429,
            3.0,
        ),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), TwilioServerError, True, None, None),
    ],
)
async def test_error_answers_raise_twilio_errors_naming_the_operation(
    call: Call,
    operation: str,
    answer: httpx.Response,
    error_class: type[TwilioError],
    retryable: bool,
    code: int | None,
    retry_after: float | None,
) -> None:
    async with twilio_with(Recorder([answer])) as twilio:
        with pytest.raises(error_class) as caught:
            await call(twilio)

    error = caught.value
    assert (error.operation, error.retryable) == (operation, retryable)
    assert (getattr(error, "code", None), getattr(error, "retry_after", None)) == (
        code,
        retry_after,
    )
    assert f"Twilio {operation} failed" in str(error)


@pytest.mark.parametrize(
    ("failure", "ambiguous"),
    [
        (httpx.ConnectError("connection refused"), False),
        (httpx.ConnectTimeout("connect timed out"), False),
        (httpx.PoolTimeout("no free connection"), False),
        (httpx.WriteTimeout("write timed out"), False),
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.ReadError("connection reset by peer"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
async def test_network_failures_say_whether_twilio_may_have_the_request(
    failure: httpx.RequestError, ambiguous: bool
) -> None:
    async with twilio_with(Recorder([failure])) as twilio:
        with pytest.raises(TwilioTransportError) as caught:
            await _send(twilio)

    error = caught.value
    assert (error.ambiguous, error.retryable, error.operation) == (ambiguous, True, "send")
    assert error.__cause__ is failure
    assert type(failure).__name__ in str(error)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, text="<html>captive portal</html>"),
        httpx.Response(201, json=["not", "an", "object"]),
        httpx.Response(201, json={"status": "queued"}),  # no sid: cannot be tracked
    ],
    ids=["html", "json-array", "no-sid"],
)
async def test_an_unreadable_success_is_treated_as_maybe_sent(answer: httpx.Response) -> None:
    async with twilio_with(Recorder([answer])) as twilio:
        with pytest.raises(TwilioTransportError) as caught:
            await _send(twilio)

    assert caught.value.ambiguous is True


# --- Real sockets --------------------------------------------------------------------


async def hang_up(request: ReceivedRequest, writer: asyncio.StreamWriter) -> bool:
    return False  # closes the connection after reading the whole request


async def stall(request: ReceivedRequest, writer: asyncio.StreamWriter) -> bool:
    await asyncio.Event().wait()  # keeps the socket open, unanswered, until the server stops
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def real_client(base_url: str, pool: str) -> AsyncIterator[TwilioClient]:
    credentials = Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN)
    if pool == "ours":  # what serve uses: aiohttp's pool under httpx
        async with TwilioClient(credentials, base_url, timeout=0.5) as twilio:
            yield twilio
        return
    # A lent httpx client that never times out by itself: TwilioClient's timeout must apply.
    async with httpx.AsyncClient(timeout=None) as http:
        yield TwilioClient(credentials, base_url, http=http, timeout=0.5)


POOLS = pytest.mark.parametrize("pool", ["ours", "lent-httpx"])


@POOLS
async def test_connection_refused_is_not_ambiguous(pool: str) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    async with asyncio.timeout(10), real_client(base_url, pool) as twilio:
        with pytest.raises(TwilioTransportError) as caught:
            await _send(twilio)
    assert caught.value.ambiguous is False


@POOLS
@pytest.mark.parametrize("behaviour", [hang_up, stall], ids=["hang-up", "stall"])
async def test_a_request_that_arrived_but_got_no_answer_is_ambiguous(
    behaviour: RawHandler, pool: str
) -> None:
    async with asyncio.timeout(10), loopback(behaviour) as (server, base_url):
        async with real_client(base_url, pool) as twilio:
            with pytest.raises(TwilioTransportError) as caught:
                await _send(twilio)

    assert caught.value.ambiguous is True
    # And indeed the server had the whole request: sending again could duplicate it.
    (request,) = server.requests
    assert request.head[0].startswith(f"POST {MESSAGES_PATH} HTTP/1.1".encode())
    assert request.body.endswith(b"To=%2B15558675310&From=%2B15017122661&Body=x")


# --- Secrets -------------------------------------------------------------------------

BASIC_TOKEN = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(
            401,
            json={
                "code": 20003,
                "message": f"Authenticate: password {AUTH_TOKEN} rejected",
                "more_info": f"https://echo.example/?auth=Basic {BASIC_TOKEN}",
            },
        ),
        httpx.Response(500, text=f"Authorization: Basic {BASIC_TOKEN} / {AUTH_TOKEN}"),
        httpx.Response(201, text=f"echo {AUTH_TOKEN}"),
        httpx.ConnectError(f"proxy said: bad password {AUTH_TOKEN}"),
        httpx.ReadError(f"peer echoed Basic {BASIC_TOKEN}"),
    ],
    ids=["json-echo", "html-echo", "success-echo", "connect-echo", "read-echo"],
)
async def test_errors_never_show_the_secret_even_when_the_server_echoes_it(
    answer: httpx.Response | Exception,
) -> None:
    async with twilio_with(Recorder([answer])) as twilio:
        with pytest.raises(TwilioError) as caught:
            await _send(twilio)

    error = caught.value
    for text in (str(error), repr(error), repr(error.args), repr(vars(error))):
        assert AUTH_TOKEN not in text
        assert BASIC_TOKEN not in text


def test_credentials_and_client_reprs_hide_the_password() -> None:
    credentials = Credentials(ACCOUNT_SID, API_KEY_SID, AUTH_TOKEN)
    twilio = TwilioClient(credentials)

    for text in (repr(credentials), str(credentials), repr(twilio)):
        assert AUTH_TOKEN not in text
    assert API_KEY_SID in repr(credentials)


async def test_nothing_is_logged_with_the_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with twilio_with(Recorder([httpx.Response(201, json=message_json())])) as twilio:
        await _send(twilio)

    assert AUTH_TOKEN not in caplog.text
    assert BASIC_TOKEN not in caplog.text


# --- Lifecycle -----------------------------------------------------------------------


async def test_aclose_leaves_a_lent_http_client_open() -> None:
    recorder = Recorder([httpx.Response(200, json=message_json())])
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        twilio = TwilioClient(Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), http=http)
        await twilio.aclose()
        assert not http.is_closed
        await twilio.get_message("SM" + "0" * 32)  # the lent client still works


async def test_aclose_closes_the_client_it_created() -> None:
    twilio = TwilioClient(Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), BASE_URL)
    await twilio.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await _get(twilio)


# --- Message resource and RFC 2822 dates ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Thu, 30 Jul 2015 20:12:31 +0000", datetime(2015, 7, 30, 20, 12, 31, tzinfo=UTC)),
        ("Mon, 29 Nov 2021 22:40:10 +0000", datetime(2021, 11, 29, 22, 40, 10, tzinfo=UTC)),
        ("Wed, 19 Jun 2019 22:04:00 -0000", datetime(2019, 6, 19, 22, 4, tzinfo=UTC)),
        ("Thu, 30 Jul 2015 21:12:31 +0100", datetime(2015, 7, 30, 20, 12, 31, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("yesterday", None),
        (1438287151, None),
        # Twilio's own layout, read by the fast path, still refuses what cannot be.
        ("Mon, 31 Feb 2020 10:00:00 +0000", None),
        ("Mon, 30 Jux 2020 10:00:00 +0000", None),
        ("Mon, 30 Jun 2020 24:00:00 +0000", None),
    ],
)
def test_rfc2822_dates_parse_to_aware_utc(text: object, expected: datetime | None) -> None:
    parsed = parse_rfc2822(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.utcoffset() == timedelta(0)


def test_format_rfc2822_writes_twilios_format() -> None:
    moment = datetime(2015, 7, 30, 22, 12, 31, tzinfo=timezone(timedelta(hours=2)))
    assert format_rfc2822(moment) == "Thu, 30 Jul 2015 20:12:31 +0000"


def test_format_rfc2822_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        format_rfc2822(datetime(2015, 7, 30, 20, 12, 31))


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ).map(lambda moment: moment.replace(microsecond=0))
)
def test_formatted_dates_read_back_the_same_here_and_in_twilio_python(moment: datetime) -> None:
    text = format_rfc2822(moment)
    assert parse_rfc2822(text) == moment
    assert twilio_deserialize.rfc2822_datetime(text) == moment


def test_message_resource_reads_twilios_documented_example() -> None:
    data = message_json(
        "MM" + "2" * 32,
        **{"from": None, "num_media": "1", "error_code": 30007, "error_message": "Filtered"},
    )
    message = MessageResource.from_json(data)

    assert message.sid == "MM" + "2" * 32
    assert message.from_ is None
    assert message.messaging_service_sid == SERVICE_SID
    assert (message.num_media, message.num_segments) == (1, 1)
    assert (message.error_code, message.error_message) == (30007, "Filtered")
    assert message.date_sent == datetime(2015, 7, 30, 20, 12, 33, tzinfo=UTC)
    assert message.raw["subresource_uris"] == data["subresource_uris"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"sid": "SM1"},
            {"to": "", "body": "", "num_segments": 0, "error_code": None, "date_sent": None},
        ),
        (
            {"sid": "SM1", "to": None, "body": None, "num_segments": None, "date_sent": None},
            {"to": "", "body": "", "num_segments": 0, "date_sent": None},
        ),
        (
            {"sid": "SM1", "num_segments": "two", "num_media": 3, "error_code": "21610"},
            {"num_segments": 0, "num_media": 3, "error_code": 21610},
        ),
        (
            {"sid": "SM1", "date_created": "not a date", "price": -0.0075, "error_code": False},
            {"date_created": None, "price": "-0.0075", "error_code": None},
        ),
    ],
    ids=["missing", "null", "odd-types", "odd-values"],
)
def test_message_resource_tolerates_missing_null_and_odd_fields(
    data: dict[str, Any], expected: dict[str, Any]
) -> None:
    message = MessageResource.from_json(data)
    assert {name: getattr(message, name) for name in expected} == expected


@pytest.mark.parametrize("data", [{}, {"sid": None}, {"sid": ""}])
def test_message_resource_requires_a_sid(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="sid"):
        MessageResource.from_json(data)


def test_message_resources_can_be_compared_and_hashed() -> None:
    first = MessageResource.from_json(message_json())
    second = MessageResource.from_json(message_json())
    assert first == second
    assert len({first, second}) == 1


# --- twilio-python as a reference ----------------------------------------------------


class ReferenceHttp(TwilioHttpClient):  # type: ignore[misc]  # twilio has no type hints
    """An HttpClient for twilio-python that records its requests instead of sending."""

    def __init__(self, answer: httpx.Response) -> None:
        super().__init__(logging.getLogger("reference"), is_async=False)
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        self.calls.append({"method": method, "uri": uri, "params": params, "data": data})
        return TwilioResponse(self.answer.status_code, self.answer.text)


def _pairs(data: dict[str, object]) -> Iterator[tuple[str, str]]:
    # twilio-python passes None through for arguments not given; requests drops them.
    for name, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                yield name, str(item)


# --- Our own pool sends what httpx would --------------------------------------------
# Every reply goes out on our own pool without httpx's Request and Response objects
# (`TwilioClient._exchange`); the wire must not tell the two paths apart.


def _wire(request: ReceivedRequest) -> tuple[bytes, list[bytes], bytes]:
    """Request line, headers (sorted, names lower-cased: order and case are not meaning)
    and body, as they arrived on the socket."""
    headers = sorted(
        name.strip().lower() + b":" + value.strip()
        for name, _, value in (line.partition(b":") for line in request.head[1:])
    )
    return request.head[0], headers, request.body


@pytest.mark.parametrize(("arguments", "_expected"), SEND_CASES)
async def test_our_pool_sends_the_same_bytes_as_httpx(
    arguments: dict[str, Any], _expected: object
) -> None:
    answer = answering(201, json.dumps(message_json()).encode())
    async with asyncio.timeout(10), loopback(answer) as (server, base_url):
        for pool in ("ours", "lent-httpx"):
            async with real_client(base_url, pool) as twilio:
                sent = await twilio.send_message(**arguments)
            assert sent.sid == message_json()["sid"]
    ours, httpx_own = server.requests
    assert _wire(ours) == _wire(httpx_own)


async def test_our_pool_asks_for_a_filtered_list_as_httpx_does() -> None:
    page = json.dumps({"messages": [message_json()], "next_page_uri": None}).encode()
    async with asyncio.timeout(10), loopback(answering(200, page)) as (server, base_url):
        for pool in ("ours", "lent-httpx"):
            async with real_client(base_url, pool) as twilio:
                listed = [
                    message
                    async for message in twilio.list_messages(
                        to="+15558675310", date_sent_after=date(2026, 1, 1), page_size=50
                    )
                ]
            assert [message.sid for message in listed] == [message_json()["sid"]]
    ours, httpx_own = server.requests
    assert b"DateSent%3E=2026-01-01" in ours.head[0]
    assert _wire(ours) == _wire(httpx_own)


async def test_our_pool_reads_twilios_refusals_as_httpx_does() -> None:
    refusal = json.dumps(
        {"code": 20429, "message": "Too Many Requests", "more_info": "https://x", "status": 429}
    ).encode()
    answer = answering(429, refusal, b"Retry-After: 7")
    errors = {}
    for pool in ("ours", "lent-httpx"):
        async with asyncio.timeout(10), loopback(answer) as (_server, base_url):
            async with real_client(base_url, pool) as twilio:
                with pytest.raises(TwilioApiError) as caught:
                    await _send(twilio)
        errors[pool] = caught.value
    assert errors["ours"].code == 20429
    assert vars(errors["ours"]) == vars(errors["lent-httpx"])
    assert str(errors["ours"]) == str(errors["lent-httpx"])


async def test_our_pool_calls_an_answer_that_is_not_json_in_doubt() -> None:
    async with asyncio.timeout(10), loopback(answering(201, b"<html>ok</html>")) as (_, url):
        async with real_client(url, "ours") as twilio:
            with pytest.raises(TwilioTransportError, match="not a JSON object") as caught:
                await _send(twilio)
    assert caught.value.ambiguous is True
