"""GET /api/conversations/{person}/messages: the adapter and the emulator each on a real
uvicorn on loopback, as an operator's script would meet them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.devtools.emulator import EmulatorConfig, EmulatorState, create_emulator_app
from adapter.runtime.settings import Settings
from adapter.web.app import create_app
from tests.history.test_service import ACCOUNT_SID, AUTH_TOKEN, OURS, PERSON, text
from tests.servers import bound_socket, serve

ADMIN_TOKEN = "admin-token-for-history-tests"
URL = f"/api/conversations/{PERSON}/messages"
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@dataclass
class Running:
    http: httpx.AsyncClient  # at the adapter, with the admin token
    emulator: EmulatorState


@contextlib.asynccontextmanager
async def running(tmp_path: Path, **settings: Any) -> AsyncIterator[Running]:
    emulator = EmulatorState()
    config = EmulatorConfig(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, numbers=[OURS])
    twilio_sock, twilio_url = bound_socket()
    adapter_sock, adapter_url = bound_socket()
    values: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "auth_token": AUTH_TOKEN,
        "twilio_base_url": twilio_url,
        "database": str(tmp_path / "adapter.sqlite3"),
        "admin_token": ADMIN_TOKEN,
    }
    adapter = create_app(Settings(**(values | settings)))
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        serve(create_emulator_app(config, emulator), twilio_sock),
        serve(adapter, adapter_sock),
        httpx.AsyncClient(base_url=adapter_url, headers=headers, timeout=10) as http,
    ):
        yield Running(http, emulator)


@pytest.mark.parametrize(
    ("admin_token", "authorization", "status"),
    [
        (None, f"Bearer {ADMIN_TOKEN}", 404),  # no token configured: the API does not exist
        (ADMIN_TOKEN, None, 401),
        (ADMIN_TOKEN, "Bearer not-the-token", 401),
        (ADMIN_TOKEN, f"Basic {ADMIN_TOKEN}", 401),
        (ADMIN_TOKEN, f"Bearer {ADMIN_TOKEN}", 200),
    ],
)
async def test_only_the_admin_token_opens_the_api(
    tmp_path: Path, admin_token: str | None, authorization: str | None, status: int
) -> None:
    async with running(tmp_path, admin_token=admin_token) as adapter:
        request = adapter.http.build_request("GET", URL, params={"with": OURS})
        del request.headers["Authorization"]
        if authorization is not None:
            request.headers["Authorization"] = authorization
        answer = await adapter.http.send(request)
    assert answer.status_code == status
    if status != 200:
        assert answer.content == b""  # no detail for whoever is knocking


@pytest.mark.parametrize(
    ("path_person", "params", "reason"),
    [
        ("5551234567", {"with": OURS}, "the person's number '5551234567' is not an E.164 number"),
        ("whatsapp:5551234567", {"with": OURS}, "is not an E.164 number"),
        (PERSON, {"with": "my number"}, "our number 'my number' is not an E.164 number"),
        ("whatsapp:" + PERSON, {"with": OURS}, "both be whatsapp: or both not"),
        (PERSON, {}, "say which of our numbers the conversation is with (no route names"),
        (PERSON, {"with": OURS, "limit": "0"}, "limit must be a whole number from 1 to 1000"),
        (PERSON, {"with": OURS, "limit": "ten"}, "limit must be a whole number from 1 to 1000"),
        (PERSON, {"with": OURS, "before": "yesterday"}, "neither an ISO 8601 time nor a cursor"),
    ],
)
async def test_bad_input_is_refused_with_the_reason(
    tmp_path: Path, path_person: str, params: dict[str, str], reason: str
) -> None:
    async with running(tmp_path) as adapter:
        answer = await adapter.http.get(f"/api/conversations/{path_person}/messages", params=params)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


async def test_with_may_be_left_out_when_one_number_is_routed(tmp_path: Path) -> None:
    async with running(tmp_path, bots=f"{OURS}=bots.echo:router") as adapter:
        text(adapter.emulator, "hello", START, inbound=True)
        answer = await adapter.http.get(URL)
    assert answer.status_code == 200
    assert answer.json()["with"] == OURS
    assert [m["body"] for m in answer.json()["messages"]] == ["hello"]


async def test_a_plus_typed_unencoded_in_the_query_still_means_plus(tmp_path: Path) -> None:
    async with running(tmp_path) as adapter:
        text(adapter.emulator, "hello", START, inbound=True)
        answer = await adapter.http.get(f"{URL}?with={OURS}")  # "+" in a query reads " "
    assert answer.status_code == 200
    assert (answer.json()["with"], len(answer.json()["messages"])) == (OURS, 1)


async def test_pages_follow_next_links_back_to_the_first_message(tmp_path: Path) -> None:
    # Twilio's times have whole seconds: several texts share one, across page boundaries.
    seconds = [0, 1, 1, 1, 1, 2, 3, 3, 3, 4, 5]
    async with running(tmp_path) as adapter:
        for index, second in enumerate(seconds):
            at = START + timedelta(seconds=second)
            text(adapter.emulator, f"text {index}", at, inbound=index % 2 == 0)
        pages: list[dict[str, Any]] = []
        link: str | None = f"{URL}?with=%2B{OURS[1:]}&limit=3"
        while link is not None:
            answer = await adapter.http.get(link)
            assert answer.status_code == 200
            pages.append(answer.json())
            link = pages[-1]["next"]
            assert len(pages) <= 10, "the next links go round in circles"

    shown = [m for page in reversed(pages) for m in page["messages"]]
    assert [len(page["messages"]) for page in pages] == [3, 3, 3, 2]
    assert len({m["sid"] for m in shown}) == len(seconds)
    assert [m["at"] for m in shown] == sorted(m["at"] for m in shown)
    first = pages[0]["messages"]
    # Texts 6, 7 and 8 share a second: the page ends inside it, the next page goes on.
    assert first[0]["body"] in {"text 6", "text 7", "text 8"}
    assert [m["body"] for m in first[1:]] == ["text 9", "text 10"]
    assert first[-1] == {
        "sid": first[-1]["sid"],
        "direction": "inbound",
        "from": PERSON,
        "to": OURS,
        "body": "text 10",
        "status": "received",
        "error_code": None,
        "num_media": 0,
        "num_segments": 1,
        "at": (START + timedelta(seconds=5)).isoformat(),
    }


async def test_a_twilio_error_is_reported_with_the_call_and_its_code(tmp_path: Path) -> None:
    async with running(tmp_path, auth_token="not-the-emulators-token") as adapter:
        answer = await adapter.http.get(URL, params={"with": OURS})
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error.startswith("Twilio list failed: HTTP 401, error 20003 (authentication failed)")
    assert "not-the-emulators-token" not in error
