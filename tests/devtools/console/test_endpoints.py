"""The console's JSON API and event stream, over real sockets: who may use them, sending
as a person, history, the exchange log, and live events."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapter.asgi import build_app
from adapter.cli.dev import DEV_AUTH_TOKEN, DEV_NUMBER
from adapter.runtime.settings import Settings
from tests.devtools.console.conftest import DevServer
from tests.servers import bound_socket, serve, wait_for

PERSON = "+15551234567"
ADMIN_TOKEN = "console-admin-token-for-tests"


# --- who may use it ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served_without_dev_mode(tmp_path: Path, admin_token: str | None) -> AsyncIterator[str]:
    sock, base = bound_socket()
    settings = Settings(
        account_sid="AC" + "1" * 32,
        auth_token="not-the-dev-token",
        admin_token=admin_token,
        database=str(tmp_path / "adapter.sqlite3"),
        # Nothing answers there; these tests never reach Twilio.
        twilio_base_url="http://127.0.0.1:9",
    )
    async with serve(build_app(settings), sock):
        yield base


ACCESS_CASES = [
    # (admin token configured, path, how the token is presented, expected status)
    (None, "/console", None, 404),
    (None, "/console/api/info", None, 404),
    (None, "/console/api/events", None, 404),
    (None, "/console/console.js", None, 404),
    (None, "/console/api/info", "header:" + ADMIN_TOKEN, 404),
    (ADMIN_TOKEN, "/console", None, 401),
    (ADMIN_TOKEN, "/console/api/info", None, 401),
    (ADMIN_TOKEN, "/console/api/exchanges", None, 401),
    (ADMIN_TOKEN, "/console/api/events", None, 401),
    (ADMIN_TOKEN, "/console/api/info", "header:wrong", 401),
    (ADMIN_TOKEN, "/console/api/info", "query:wrong", 401),
    (ADMIN_TOKEN, "/console/api/info", "header:" + ADMIN_TOKEN, 200),
    (ADMIN_TOKEN, "/console/api/info", "query:" + ADMIN_TOKEN, 200),
    (ADMIN_TOKEN, "/console", "query:" + ADMIN_TOKEN, 200),
    (ADMIN_TOKEN, "/console/api/exchanges", "header:" + ADMIN_TOKEN, 200),
    # The page's code holds no data, and a <script> request cannot carry a header.
    (ADMIN_TOKEN, "/console/console.js", None, 200),
    (ADMIN_TOKEN, "/console/not-a-file.py", None, 404),
]


@pytest.mark.parametrize("admin_token", [None, ADMIN_TOKEN])
async def test_outside_dev_mode_the_console_needs_the_admin_token(
    tmp_path: Path, admin_token: str | None
) -> None:
    answers = []
    expected = []
    async with (
        served_without_dev_mode(tmp_path, admin_token) as base,
        httpx.AsyncClient(timeout=10) as client,
    ):
        for token, path, presented, status in ACCESS_CASES:
            if token != admin_token:
                continue
            headers: dict[str, str] = {}
            params: dict[str, str] = {}
            if presented is not None:
                where, _, value = presented.partition(":")
                if where == "header":
                    headers["Authorization"] = f"Bearer {value}"
                else:
                    params["token"] = value
            response = await client.get(base + path, headers=headers, params=params)
            answers.append((path, presented, response.status_code))
            expected.append((path, presented, status))
            if response.status_code == 401:
                assert response.headers["www-authenticate"] == "Bearer"
    assert answers == expected


async def test_the_page_never_echoes_the_token(tmp_path: Path) -> None:
    async with (
        served_without_dev_mode(tmp_path, ADMIN_TOKEN) as base,
        httpx.AsyncClient(timeout=10) as client,
    ):
        page = await client.get(f"{base}/console", params={"token": ADMIN_TOKEN})
        info = await client.get(f"{base}/console/api/info", params={"token": ADMIN_TOKEN})
    assert page.status_code == 200 and "<title>" in page.text
    assert ADMIN_TOKEN not in page.text
    assert ADMIN_TOKEN not in info.text
    # The page's URL (with ?token=) is not handed to the media images it shows.
    assert page.headers["referrer-policy"] == "no-referrer"
    assert info.json()["exchange_log"] is False and info.json()["live"] is False


# --- texting as a person -------------------------------------------------------------------


async def _send(client: httpx.AsyncClient, base: str, **fields: Any) -> httpx.Response:
    return await client.post(f"{base}/console/api/send", json=fields)


REFUSED_TEXTS: list[tuple[dict[str, Any], str]] = [
    ({"person": "+1555", "body": "hi"}, "is not an E.164 number"),
    ({"person": "", "body": "hi"}, "Enter the person's number"),
    ({"person": PERSON, "body": "   "}, "The message is empty"),
    ({"person": PERSON, "body": ""}, "The message is empty"),
    ({"person": PERSON, "body": "hi", "media": ["ftp://example.com/a.png"]}, "not an http(s) URL"),
    ({"person": PERSON, "body": "x" * 1601}, "at most 1600 characters"),
    ({"person": PERSON, "ours": "+15550000000", "body": "hi"}, "not one of the emulated numbers"),
]


async def test_a_bad_text_is_refused_with_a_reason(dev_server: DevServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for fields, reason in REFUSED_TEXTS:
            response = await _send(client, dev_server.base, **fields)
            assert response.status_code == 400, fields
            assert reason in response.json()["error"], fields
    assert dev_server.dev.emulator.messages() == []


async def test_only_json_is_accepted_so_other_sites_cannot_post_forms(
    dev_server: DevServer,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{dev_server.base}/console/api/send", data={"person": PERSON, "body": "hi"}
        )
    assert response.status_code == 415
    assert dev_server.dev.emulator.messages() == []


async def test_a_text_sent_from_the_console_reaches_the_bot_and_shows_in_history(
    dev_server: DevServer,
) -> None:
    base = dev_server.base
    async with httpx.AsyncClient(timeout=10) as client:
        sent = await _send(
            client, base, person=PERSON, body="hello", media=["https://example.com/cat.jpg"]
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["webhook_status"] == 200

        async def delivered_history() -> list[dict[str, Any]] | None:
            response = await client.get(
                f"{base}/console/api/history", params={"ours": DEV_NUMBER, "person": PERSON}
            )
            messages: list[dict[str, Any]] = response.json()["messages"]
            done = len(messages) == 2 and messages[1]["status"] == "delivered"
            return messages if done else None

        hello, reply = await wait_for(delivered_history)
        conversations = (await client.get(f"{base}/console/api/conversations")).json()
    assert (hello["direction"], hello["body"], hello["num_media"]) == ("inbound", "hello", 1)
    assert (reply["direction"], reply["body"]) == ("outbound", "You said: hello")
    assert [(c["ours"], c["person"]) for c in conversations["conversations"]] == [
        (DEV_NUMBER, PERSON)
    ]


async def test_history_is_paged_back_to_the_first_message(dev_server: DevServer) -> None:
    base = dev_server.base
    async with httpx.AsyncClient(timeout=10) as client:
        seeded = await client.post(
            f"{base}/_emulator/seed", json={"ours": DEV_NUMBER, "person": PERSON, "count": 150}
        )
        assert seeded.status_code == 200
        bodies: list[str] = []
        before: str | None = None
        for _ in range(5):
            params = {"person": PERSON, **({"before": before} if before else {})}
            page = (await client.get(f"{base}/console/api/history", params=params)).json()
            bodies = [m["body"] for m in page["messages"]] + bodies
            before = page["before"]
            if before is None:
                break
    assert bodies == [f"Seeded message {i} of 150" for i in range(1, 151)]


BAD_HISTORY_REQUESTS = [
    ({"person": "12345"}, "is not an E.164 number"),
    ({"person": PERSON, "ours": "nope"}, "is not an E.164 number"),
    ({"person": PERSON, "before": "yesterday"}, "neither an ISO 8601 time nor a cursor"),
]


async def test_a_bad_history_request_says_why(dev_server: DevServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for params, reason in BAD_HISTORY_REQUESTS:
            response = await client.get(f"{dev_server.base}/console/api/history", params=params)
            assert response.status_code == 400, params
            assert reason in response.json()["error"], params


# --- the exchange log ----------------------------------------------------------------------


async def test_the_exchange_log_shows_each_call_with_its_signature_result_and_no_secret(
    dev_server: DevServer,
) -> None:
    base = dev_server.base
    async with httpx.AsyncClient(timeout=10) as client:
        await _send(client, base, person=PERSON, body="hello")
        forged = await client.post(
            f"{base}/api/sms",
            data={
                "From": PERSON,
                "To": DEV_NUMBER,
                "Body": "forged",
                "MessageSid": "SM" + "f" * 32,
            },
            headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        )
        assert forged.status_code == 403

        async def complete_log() -> list[dict[str, Any]] | None:
            log = (await client.get(f"{base}/console/api/exchanges")).json()["exchanges"]
            statuses = [e for e in log if e["kind"] == "status callback"]
            return log if len(statuses) == 3 else None

        log = await wait_for(complete_log)
        details = [
            (await client.get(f"{base}/console/api/exchanges/{e['id']}")).json() for e in log
        ]
        missing = await client.get(f"{base}/console/api/exchanges/999999")

    webhooks = [(e["path"], e["status"], e["signature"]) for e in log if e["kind"] == "webhook"]
    assert ("/api/sms", 200, "valid") in webhooks
    assert ("/api/sms", 403, "rejected") in webhooks
    [create] = [e for e in details if e["kind"] == "REST" and e["method"] == "POST"]
    assert create["status"] == 201 and create["signature"] is None
    assert "Body=You+said%3A+hello" in create["request"]["body"]
    assert '"status":"queued"' in create["response"]["body"].replace(" ", "")
    assert ["authorization", "Basic [redacted]"] in create["request"]["headers"]
    assert all(e["duration_ms"] >= 0 for e in log)
    assert DEV_AUTH_TOKEN not in json.dumps(details)
    assert missing.status_code == 404


# --- the event stream ----------------------------------------------------------------------


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str, Any]]:
    """(id, event, data) of each event in a Server-Sent Events stream."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "event" in fields:
                yield fields.get("id", ""), fields["event"], json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


async def test_the_stream_says_hello_then_pushes_texts_and_statuses_as_they_change(
    dev_server: DevServer,
) -> None:
    base = dev_server.base
    seen: list[tuple[str, Any]] = []
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{base}/console/api/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream)
            _, first, hello = await anext(events)
            assert first == "hello" and hello["live"] is True
            await _send(client, base, person=PERSON, body="hello")
            async for _, kind, data in events:
                seen.append((kind, data))
                if kind == "message" and data["direction"] == "outbound":
                    if data["status"] == "delivered":
                        break
    texts = [data for kind, data in seen if kind == "message"]
    assert texts[0]["body"] == "hello" and texts[0]["person"] == PERSON
    statuses = [t["status"] for t in texts if t["direction"] == "outbound"]
    assert statuses == ["queued", "sent", "delivered"]
    assert {"webhook", "REST", "status callback"} <= {d["kind"] for k, d in seen if k == "exchange"}


async def test_a_page_that_reconnects_resumes_where_it_left_off(dev_server: DevServer) -> None:
    base = dev_server.base
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{base}/console/api/events") as stream:
            last_id, _, _ = await anext(_events(stream))
        # Missed while away: one seeded conversation of three texts.
        await client.post(
            f"{base}/_emulator/seed", json={"ours": DEV_NUMBER, "person": PERSON, "count": 3}
        )
        headers = {"Last-Event-ID": last_id}
        async with client.stream("GET", f"{base}/console/api/events", headers=headers) as stream:
            # Only the texts are asserted: exchanges (the REST calls of inbound catch-up,
            # say) may interleave with them.
            missed = []
            async for event in _events(stream):
                if event[1] == "message":
                    missed.append(event)
                if len(missed) == 3:
                    break
        # An id from a server that is gone means: start over.
        headers = {"Last-Event-ID": "0ld3p0ch-12"}
        async with client.stream("GET", f"{base}/console/api/events", headers=headers) as stream:
            _, after_restart, _ = await anext(_events(stream))
    assert [(kind, data["body"]) for _, kind, data in missed] == [
        ("message", f"Seeded message {i} of 3") for i in (1, 2, 3)
    ]
    assert after_restart == "hello"


async def test_a_page_too_far_behind_is_told_to_reload(dev_server: DevServer) -> None:
    base = dev_server.base
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{base}/console/api/events") as stream:
            last_id, _, _ = await anext(_events(stream))
        await client.post(
            f"{base}/_emulator/seed", json={"ours": DEV_NUMBER, "person": PERSON, "count": 1500}
        )
        headers = {"Last-Event-ID": last_id}
        async with client.stream("GET", f"{base}/console/api/events", headers=headers) as stream:
            _, kind, _ = await anext(_events(stream))
    assert kind == "reset"


async def test_a_stream_ends_by_itself_so_shutdown_is_never_held_up(
    dev_server: DevServer,
) -> None:
    dev_server.dev.app.state.console.stream_seconds = 0.2
    dev_server.dev.app.state.console.heartbeat_seconds = 0.05
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{dev_server.base}/console/api/events")
    assert response.status_code == 200
    assert response.text.startswith("retry: ")
    assert "event: hello" in response.text


async def test_the_page_answers_with_or_without_a_trailing_slash(dev_server: DevServer) -> None:
    async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
        page = await client.get(f"{dev_server.base}/console/", params={"token": "kept"})
    assert page.status_code == 200 and "dev console" in page.text
    assert page.url.path == "/console" and page.url.params["token"] == "kept"
