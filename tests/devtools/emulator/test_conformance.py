"""The official twilio library, pointed at the emulator on a real uvicorn, works as it
does against Twilio: create, fetch, list with paging and filters, errors, dropped
connections. The library is synchronous (requests), so each call runs in a thread while
the emulator serves from the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from adapter.devtools.emulator import (
    EmulatorConfig,
    EmulatorState,
    create_emulator_app,
    parse_faults,
)
from tests.devtools.emulator.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    OUR_NUMBER,
    PERSON,
    make_config,
)
from tests.servers import bound_socket, serve

T = TypeVar("T")
API_KEY, API_SECRET = "SK" + "3" * 32, "api-secret"
SERVICE_SID = "MG" + "2" * 32
OTHER_PERSON = "+447700900123"
MARCH_1 = datetime(2024, 3, 1, 6, 0, tzinfo=UTC)


@dataclass
class Twilio:
    base_url: str
    state: EmulatorState
    clients: list[Any] = field(default_factory=list)

    def client(self, username: str = ACCOUNT_SID, password: str = AUTH_TOKEN) -> Any:
        client = Client(username, password, account_sid=ACCOUNT_SID)
        # Every twilio API domain keeps its base URL here; the Messages API is `api`.
        client.api.base_url = self.base_url
        self.clients.append(client)
        return client

    @staticmethod
    async def call(work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)


@contextlib.asynccontextmanager
async def twilio_at(config: EmulatorConfig) -> AsyncIterator[Twilio]:
    state = EmulatorState()
    sock, base_url = bound_socket()
    running = Twilio(base_url, state)
    try:
        async with serve(create_emulator_app(config, state), sock):
            yield running
    finally:
        for client in running.clients:
            client.http_client.session.close()
        await state.aclose()


@pytest.fixture
async def twilio() -> AsyncIterator[Twilio]:
    async with twilio_at(make_config(api_keys={API_KEY: API_SECRET})) as running:
        yield running


async def test_create_then_fetch(twilio: Twilio) -> None:
    client = twilio.client()

    created = await twilio.call(
        lambda: client.messages.create(to=PERSON, from_=OUR_NUMBER, body="Hello from twilio-python")
    )
    await twilio.state.settle()
    fetched = await twilio.call(lambda: client.messages(created.sid).fetch())

    assert (created.status, created.direction, created.num_segments) == (
        "queued",
        "outbound-api",
        "1",
    )
    assert (created.account_sid, created.from_, created.to) == (ACCOUNT_SID, OUR_NUMBER, PERSON)
    assert created.date_created.tzinfo is not None
    assert (fetched.sid, fetched.body, fetched.status) == (
        created.sid,
        "Hello from twilio-python",
        "delivered",
    )
    assert fetched.date_sent is not None


async def test_create_with_media_and_a_messaging_service(twilio: Twilio) -> None:
    client = twilio.client()

    created = await twilio.call(
        lambda: client.messages.create(
            to=PERSON,
            messaging_service_sid=SERVICE_SID,
            media_url=["https://example.com/a.jpg", "https://example.com/b.jpg"],
        )
    )

    assert (created.status, created.num_media, created.messaging_service_sid) == (
        "accepted",
        "2",
        SERVICE_SID,
    )
    assert created.sid.startswith("MM")


async def test_an_api_key_authenticates(twilio: Twilio) -> None:
    client = twilio.client(API_KEY, API_SECRET)

    created = await twilio.call(
        lambda: client.messages.create(to=PERSON, from_=OUR_NUMBER, body="via key")
    )

    assert created.account_sid == ACCOUNT_SID


async def test_listing_follows_pages(twilio: Twilio) -> None:
    twilio.state.seed_conversation(
        OUR_NUMBER, PERSON, 5, start=MARCH_1, interval=timedelta(hours=1)
    )
    client = twilio.client()

    everything = await twilio.call(lambda: client.messages.list(page_size=2))
    limited = await twilio.call(lambda: client.messages.list(page_size=2, limit=3))
    pages = await twilio.call(lambda: _page_sizes(client.messages.page(page_size=2)))

    assert [m.body for m in everything] == [f"Seeded message {n} of 5" for n in (5, 4, 3, 2, 1)]
    assert [m.body for m in limited] == [f"Seeded message {n} of 5" for n in (5, 4, 3)]
    assert pages == [2, 2, 1]


def _page_sizes(page: Any) -> list[int]:
    sizes = []
    while page is not None:
        sizes.append(len(list(page)))
        page = page.next_page()
    return sizes


# Six texts, twelve hours apart, from March 1 06:00 UTC: the person writes at 06:00 and
# we answer at 18:00 each day; plus one text from another person on March 2.
@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        pytest.param({"to": OUR_NUMBER}, ["p5", "o1", "p3", "p1"], id="to"),
        pytest.param({"from_": OUR_NUMBER}, ["p6", "p4", "p2"], id="from"),
        pytest.param({"date_sent": datetime(2024, 3, 2)}, ["p4", "o1", "p3"], id="date-sent"),
        pytest.param(
            {"date_sent_before": datetime(2024, 3, 1)}, ["p2", "p1"], id="date-sent-before"
        ),
        pytest.param(
            {"date_sent_after": datetime(2024, 3, 3), "to": PERSON}, ["p6"], id="after-and-to"
        ),
    ],
)
async def test_listing_filters(
    twilio: Twilio, filters: dict[str, Any], expected: list[str]
) -> None:
    seeded = twilio.state.seed_conversation(
        OUR_NUMBER, PERSON, 6, start=MARCH_1, interval=timedelta(hours=12)
    )
    other = twilio.state.seed_conversation(
        OUR_NUMBER, OTHER_PERSON, 1, start=MARCH_1 + timedelta(days=1, hours=1)
    )
    names = {m.sid: f"p{i + 1}" for i, m in enumerate(seeded)} | {other[0].sid: "o1"}
    client = twilio.client()

    listed = await twilio.call(lambda: client.messages.list(page_size=2, **filters))

    assert [names[m.sid] for m in listed] == expected


@pytest.mark.parametrize(
    ("send", "status", "code"),
    [
        pytest.param({"to": "5551234567", "body": "x"}, 400, 21211, id="invalid-to"),
        pytest.param(
            {"to": PERSON, "body": "x", "from_": "+15008675309"}, 400, 21606, id="foreign-from"
        ),
        pytest.param({"to": PERSON}, 400, 21602, id="no-body"),
    ],
)
async def test_errors_reach_the_library_as_twilio_rest_exceptions(
    twilio: Twilio, send: dict[str, Any], status: int, code: int
) -> None:
    client = twilio.client()
    arguments = {"from_": OUR_NUMBER} | send

    with pytest.raises(TwilioRestException) as caught:
        await twilio.call(lambda: client.messages.create(**arguments))

    assert (caught.value.status, caught.value.code) == (status, code)


async def test_a_wrong_token_is_refused(twilio: Twilio) -> None:
    client = twilio.client(ACCOUNT_SID, "not-the-token")

    with pytest.raises(TwilioRestException) as caught:
        await twilio.call(lambda: client.messages.create(to=PERSON, from_=OUR_NUMBER, body="x"))

    assert (caught.value.status, caught.value.code) == (401, 20003)
    assert twilio.state.messages() == []


async def test_a_dropped_create_fails_in_the_library_yet_the_text_exists() -> None:
    async with twilio_at(make_config(faults=parse_faults("drop=1"))) as twilio:
        client = twilio.client()

        with pytest.raises(requests.exceptions.ConnectionError):
            await twilio.call(
                lambda: client.messages.create(to=PERSON, from_=OUR_NUMBER, body="lost answer")
            )
        listed = await twilio.call(lambda: client.messages.list(to=PERSON))

    assert [m.body for m in listed] == ["lost answer"]


async def test_every_send_option_goes_through_the_library_and_reads_back() -> None:
    template = "HX" + "8" * 32
    app = "AP" + "8" * 32
    config = make_config(
        content_templates={template: "Your code is {{1}}"},
        applications={app: "http://127.0.0.1:9/status"},
    )
    async with twilio_at(config) as twilio:
        client = twilio.client()
        send_at = twilio.state.clock() + timedelta(hours=3)
        scheduled = await twilio.call(
            lambda: client.messages.create(
                to=PERSON,
                messaging_service_sid=SERVICE_SID,
                body="Your appointment is tomorrow at 9",
                send_at=send_at,
                schedule_type="fixed",
                validity_period=600,
                max_price=0.05,
                smart_encoded=True,
                shorten_urls=True,
                send_as_mms=False,
                application_sid=app,
            )
        )
        templated = await twilio.call(
            lambda: client.messages.create(
                to=PERSON,
                from_=OUR_NUMBER,
                content_sid=template,
                content_variables=json.dumps({"1": "123456"}),
            )
        )
        raw = await twilio.call(
            lambda: client.request(
                "GET",
                f"{twilio.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{scheduled.sid}.json",
            )
        )
        canceled = await twilio.call(
            lambda: client.messages(scheduled.sid).update(status="canceled")
        )
        refused = await twilio.call(
            lambda: _raised(lambda: client.messages(scheduled.sid).update(status="canceled"))
        )

    assert scheduled.status == "scheduled"
    options = json.loads(raw.text)
    assert {name: options[name] for name in SENT_OPTIONS} == {
        "send_at": send_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "schedule_type": "fixed",
        "validity_period": 600,
        "max_price": "0.05",
        "smart_encoded": True,
        "shorten_urls": True,
        "send_as_mms": False,
        "application_sid": app,
    }
    assert templated.body == "Your code is 123456"
    assert canceled.status == "canceled"
    assert isinstance(refused, TwilioRestException) and refused.code == 30409


SENT_OPTIONS = (
    "send_at",
    "schedule_type",
    "validity_period",
    "max_price",
    "smart_encoded",
    "shorten_urls",
    "send_as_mms",
    "application_sid",
)


def _raised(work: Callable[[], object]) -> BaseException | None:
    try:
        work()
    except Exception as error:  # the library's exception, returned for the assertion
        return error
    return None


async def _text_in(twilio: Twilio, body: str, **fields: str) -> str:
    async with httpx.AsyncClient(base_url=twilio.base_url) as http:
        answer = await http.post(
            "/_emulator/inbound", data={"From": PERSON, "Body": body, **fields}
        )
    assert answer.status_code == 200, answer.text
    sid: str = answer.json()["sid"]
    return sid


async def test_the_media_subresource_lists_fetches_and_deletes_a_messages_media(
    twilio: Twilio,
) -> None:
    client = twilio.client()
    sent = await twilio.call(
        lambda: client.messages.create(
            to=PERSON,
            from_=OUR_NUMBER,
            media_url=["https://example.com/a.jpg", "https://example.com/b.png"],
        )
    )
    received = await _text_in(twilio, "look", MediaUrl="data:image/gif;base64,R0lGODlhAQABAAAAACw=")

    listed = await twilio.call(lambda: client.messages(sent.sid).media.list())
    one = await twilio.call(lambda: client.messages(sent.sid).media(listed[1].sid).fetch())
    theirs = await twilio.call(lambda: client.messages(received).media.list())

    assert [(m.content_type, m.parent_sid) for m in listed] == [
        ("image/jpeg", sent.sid),
        ("image/png", sent.sid),
    ]
    assert all(m.sid.startswith("ME") and m.account_sid == ACCOUNT_SID for m in listed)
    assert (one.sid, one.content_type, one.date_created.tzinfo is not None) == (
        listed[1].sid,
        "image/png",
        True,
    )
    assert one.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sent.sid}/Media/{one.sid}.json"
    assert [(m.content_type, m.parent_sid) for m in theirs] == [("image/gif", received)]

    assert await twilio.call(lambda: client.messages(sent.sid).media(listed[0].sid).delete())
    left = await twilio.call(lambda: client.messages(sent.sid).media.list())
    assert [m.sid for m in left] == [listed[1].sid]


async def test_media_of_a_text_without_media_or_of_no_message(twilio: Twilio) -> None:
    client = twilio.client()
    sent = await twilio.call(
        lambda: client.messages.create(to=PERSON, from_=OUR_NUMBER, body="plain")
    )

    assert await twilio.call(lambda: client.messages(sent.sid).media.list()) == []
    # The library reports a list's error as a TwilioException holding the response.
    with pytest.raises(TwilioException) as listing:
        await twilio.call(lambda: client.messages("SM" + "0" * 32).media.list())
    assert _error_of(listing.value) == (404, 20404)
    with pytest.raises(TwilioRestException) as caught:
        await twilio.call(lambda: client.messages(sent.sid).media("ME" + "0" * 32).fetch())
    assert (caught.value.status, caught.value.code) == (404, 20404)


# The formats Twilio's API description shows for DateSent, against the six texts of
# `test_listing_filters` (p3, p4 and o1 on March 2; p5, p6 on March 3, UTC).
@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param("03/01/2024 22:05:25 MST", ["p6", "p5", "p4", "o1", "p3"], id="us-mst"),
        pytest.param("03/02/2024 20:00:00 EST", ["p6", "p5"], id="us-est-next-utc-day"),
        pytest.param("2024-03-02 22:05:25.000", ["p6", "p5", "p4", "o1", "p3"], id="iso-space"),
        pytest.param("Sat, 02 Mar 2024 22:04:00 -0000", ["p6", "p5", "p4", "o1", "p3"], id="rfc"),
    ],
)
async def test_date_sent_filters_in_twilios_documented_formats(
    twilio: Twilio, after: str, expected: list[str]
) -> None:
    seeded = twilio.state.seed_conversation(
        OUR_NUMBER, PERSON, 6, start=MARCH_1, interval=timedelta(hours=12)
    )
    other = twilio.state.seed_conversation(
        OUR_NUMBER, OTHER_PERSON, 1, start=MARCH_1 + timedelta(days=1, hours=1)
    )
    names = {m.sid: f"p{i + 1}" for i, m in enumerate(seeded)} | {other[0].sid: "o1"}
    client = twilio.client()

    # The library passes a string through as it is: `DateSent>=<after>` on the wire.
    listed = await twilio.call(lambda: client.messages.list(date_sent_after=after))

    assert [names[m.sid] for m in listed] == expected


async def test_a_date_sent_filter_that_is_no_date_is_refused(twilio: Twilio) -> None:
    client = twilio.client()

    with pytest.raises(TwilioException) as caught:
        await twilio.call(lambda: client.messages.list(date_sent_after="13/45/2019 25:00:00 MST"))

    assert _error_of(caught.value) == (400, 20001)


def _error_of(exception: TwilioException) -> tuple[int, int]:
    response = exception.args[1]
    return response.status_code, json.loads(response.text)["code"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/Messages.json", "GET, HEAD, POST"),
        ("PUT", "/Messages/{sid}.json", "GET, HEAD, POST"),
        ("POST", "/Messages/{sid}/Media.json", "GET, HEAD"),
        ("PATCH", ".json", "GET, HEAD"),
    ],
)
async def test_a_method_a_resource_does_not_have_answers_405_in_twilios_shape(
    twilio: Twilio, method: str, path: str, allowed: str
) -> None:
    client = twilio.client()
    sent = await twilio.call(lambda: client.messages.create(to=PERSON, from_=OUR_NUMBER, body="x"))
    url = f"{twilio.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}{path.format(sid=sent.sid)}"

    answer = await twilio.call(
        lambda: requests.request(method, url, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10)
    )

    assert answer.status_code == 405
    assert answer.json() == {
        "code": 20004,
        "message": "Method not allowed",
        "more_info": "https://www.twilio.com/docs/errors/20004",
        "status": 405,
    }
    assert answer.headers["Allow"] == allowed
    # Credentials are checked first, as everywhere else.
    anonymous = await twilio.call(lambda: requests.request(method, url, timeout=10))
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("keyword", "answer"),
    [
        (
            "stop",
            "You have successfully been unsubscribed. You will not receive any more messages "
            "from this number. Reply START to resubscribe.",
        ),
        (
            "START",
            "You have successfully been re-subscribed to messages from this number. "
            "Reply HELP for help. Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
        ),
        ("Help", "Reply STOP to unsubscribe. Msg&Data Rates May Apply."),
    ],
)
async def test_twilio_answers_stop_start_and_help_itself(
    twilio: Twilio, keyword: str, answer: str
) -> None:
    client = twilio.client()

    keyword_sid = await _text_in(twilio, keyword)
    await _text_in(twilio, "just a text")

    listed = await twilio.call(lambda: client.messages.list())
    conversation = [(m.direction, m.from_, m.to, m.body) for m in reversed(listed)]
    assert conversation == [
        ("inbound", PERSON, OUR_NUMBER, keyword),
        ("outbound-reply", OUR_NUMBER, PERSON, answer),
        ("inbound", PERSON, OUR_NUMBER, "just a text"),
    ]
    assert listed[-1].sid == keyword_sid
    assert listed[1].status == "delivered"


async def test_no_automatic_answer_on_whatsapp(twilio: Twilio) -> None:
    client = twilio.client()

    await _text_in(twilio, "STOP", From=f"whatsapp:{PERSON}", To=f"whatsapp:{OUR_NUMBER}")

    listed = await twilio.call(lambda: client.messages.list())
    assert [m.direction for m in listed] == ["inbound"]
