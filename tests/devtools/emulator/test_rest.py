"""Send and Fetch Message: Twilio's JSON shapes, error codes and Basic auth."""

from __future__ import annotations

import base64
import re
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from tests.devtools.emulator.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES,
    OUR_NUMBER,
    PERSON,
    Emulator,
    make_config,
    running_emulator,
)

SERVICE_SID = "MG" + "9" * 32
API_KEY, API_SECRET = "SK" + "7" * 32, "key-secret"


async def test_send_answers_twilios_message_json(emulator: Emulator) -> None:
    response = await emulator.send(Body="Hello {€}", StatusCallback="https://example.com/s")

    assert response.status_code == 201
    message = response.json()
    sid = message["sid"]
    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    assert parsedate_to_datetime(message["date_created"]).utcoffset() is not None
    base = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}"
    assert message == {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": "Hello {€}",
        "date_created": message["date_created"],
        "date_sent": None,
        "date_updated": message["date_created"],
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": OUR_NUMBER,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
        "to": PERSON,
        "uri": f"{base}.json",
    }


async def test_fetch_returns_the_message_as_it_moves_on(emulator: Emulator) -> None:
    sid = (await emulator.send(Body="x" * 200)).json()["sid"]
    await emulator.state.settle()

    response = await emulator.client.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json")

    assert response.status_code == 200
    message = response.json()
    assert (message["sid"], message["status"], message["num_segments"]) == (sid, "delivered", "2")
    assert parsedate_to_datetime(message["date_sent"]) >= parsedate_to_datetime(
        message["date_created"]
    )


async def test_media_messages_are_mms(emulator: Emulator) -> None:
    response = await emulator.send(
        Body="", MediaUrl=["https://example.com/a.jpg", "https://example.com/b.png"]
    )

    assert response.status_code == 201
    assert response.json()["sid"].startswith("MM")
    assert response.json()["num_media"] == "2"


async def test_a_messaging_service_picks_the_first_number_once_sent(emulator: Emulator) -> None:
    response = await emulator.client.post(
        MESSAGES, data={"To": PERSON, "MessagingServiceSid": SERVICE_SID, "Body": "hi"}
    )
    created = response.json()
    await emulator.state.settle()
    stored = emulator.state.get(created["sid"])

    assert (created["status"], created["from"], created["messaging_service_sid"]) == (
        "accepted",
        None,
        SERVICE_SID,
    )
    assert stored is not None
    assert (stored.status, stored.from_) == ("delivered", OUR_NUMBER)


async def test_a_body_of_exactly_1600_characters_is_accepted(emulator: Emulator) -> None:
    response = await emulator.send(Body="a" * 1600)

    assert (response.status_code, response.json()["num_segments"]) == (201, "11")


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        pytest.param({"To": ""}, 400, 21604, id="missing-to"),
        pytest.param({"To": "5551234567"}, 400, 21211, id="to-without-plus"),
        pytest.param({"To": "+0123"}, 400, 21211, id="to-bad-country-code"),
        pytest.param({"To": "whatsapp:5551234567"}, 400, 21211, id="whatsapp-to-not-e164"),
        pytest.param({"From": ""}, 400, 21603, id="missing-from-and-service"),
        pytest.param({"From": "+15009999999"}, 400, 21606, id="from-not-ours"),
        pytest.param({"To": "whatsapp:" + PERSON}, 400, 21910, id="sms-from-whatsapp-to"),
        pytest.param({"Body": ""}, 400, 21602, id="no-body-no-media"),
        pytest.param({"Body": "a" * 1601}, 400, 21617, id="body-too-long"),
        pytest.param(
            {"MediaUrl": [f"https://example.com/{i}.jpg" for i in range(11)]},
            400,
            21623,
            id="too-many-media",
        ),
    ],
)
async def test_bad_sends_answer_twilio_errors_and_create_nothing(
    emulator: Emulator, form: dict[str, Any], status: int, code: int
) -> None:
    response = await emulator.send(**form)

    assert response.status_code == status
    assert response.json() == {
        "code": code,
        "message": response.json()["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert response.json()["message"]
    assert emulator.state.messages() == []


def _basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


OTHER_ACCOUNT = "AC" + "6" * 32


@pytest.mark.parametrize(
    ("headers", "path", "status", "code"),
    [
        pytest.param({}, MESSAGES, 401, 20003, id="no-credentials"),
        pytest.param(_basic(ACCOUNT_SID, "wrong"), MESSAGES, 401, 20003, id="wrong-token"),
        pytest.param(_basic(OTHER_ACCOUNT, AUTH_TOKEN), MESSAGES, 401, 20003, id="other-sid"),
        pytest.param(_basic(API_KEY, "wrong"), MESSAGES, 401, 20003, id="api-key-wrong-secret"),
        pytest.param({"Authorization": "Basic %%%"}, MESSAGES, 401, 20003, id="not-base64"),
        pytest.param({"Authorization": f"Bearer {AUTH_TOKEN}"}, MESSAGES, 401, 20003, id="bearer"),
        pytest.param(_basic(ACCOUNT_SID, AUTH_TOKEN), MESSAGES, 200, None, id="account-token"),
        pytest.param(_basic(API_KEY, API_SECRET), MESSAGES, 200, None, id="api-key"),
        pytest.param(
            _basic(ACCOUNT_SID, AUTH_TOKEN),
            f"/2010-04-01/Accounts/{OTHER_ACCOUNT}/Messages.json",
            404,
            20404,
            id="path-names-another-account",
        ),
        pytest.param(
            _basic(ACCOUNT_SID, AUTH_TOKEN),
            f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
            404,
            20404,
            id="resource-not-emulated",
        ),
        pytest.param(
            {}, f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json", 401, 20003, id="auth-first"
        ),
    ],
)
async def test_basic_auth_like_twilio(
    headers: dict[str, str], path: str, status: int, code: int | None
) -> None:
    config = make_config(api_keys={API_KEY: API_SECRET})
    async with running_emulator(config) as running:
        response = await running.client.get(path, headers=headers, auth=None)

    assert response.status_code == status
    if code is not None:
        assert (response.json()["code"], response.json()["status"]) == (code, status)
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")
        assert AUTH_TOKEN not in response.text


async def test_fetching_an_unknown_message_is_20404(emulator: Emulator) -> None:
    sid = "SM" + "0" * 32
    response = await emulator.client.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json")

    assert (response.status_code, response.json()["code"]) == (404, 20404)
    assert sid in response.json()["message"]


async def test_api_key_can_send() -> None:
    config = make_config(api_keys={API_KEY: API_SECRET})
    async with running_emulator(config) as running:
        response = await running.client.post(
            MESSAGES,
            data={"To": PERSON, "From": OUR_NUMBER, "Body": "via key"},
            auth=(API_KEY, API_SECRET),
        )

    assert response.status_code == 201
    assert response.json()["account_sid"] == ACCOUNT_SID
