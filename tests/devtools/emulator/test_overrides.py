"""Webhook connection overrides: the emulator retries a failed webhook as the fragment of
its webhook URL says, and posts (and signs) the URL without the fragment."""

from __future__ import annotations

from typing import Any

import pytest
from twilio.request_validator import RequestValidator

from tests.devtools.emulator.conftest import (
    AUTH_TOKEN,
    PERSON,
    Receiver,
    make_config,
    running_emulator,
)
from tests.servers import bound_socket

INBOUND = "/_emulator/inbound"


async def text_to(webhook_url: str) -> dict[str, Any]:
    async with running_emulator(make_config(webhook_url=webhook_url)) as emulator:
        response = await emulator.client.post(INBOUND, json={"From": PERSON, "Body": "hi"})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        # Kept as received whatever the webhook did, for List Messages to find.
        assert emulator.state.get(answer["sid"]) is not None
        return answer


def dead_url() -> str:
    sock, base = bound_socket()
    sock.close()  # nothing listens there
    return f"{base}/api/sms"


@pytest.mark.parametrize(
    ("fragment", "attempts"),
    [("", 1), ("#rc=0", 1), ("#rc=3", 4), ("#rc=2&rp=5xx", 1), ("#rc=2&rp=all", 3)],
)
async def test_a_connection_failure_is_retried_as_the_fragment_says(
    fragment: str, attempts: int
) -> None:
    answer = await text_to(dead_url() + fragment)
    assert answer["webhook_status"] is None
    assert answer["webhook_attempts"] == attempts


@pytest.mark.parametrize(("fragment", "attempts"), [("#rc=2", 1), ("#rc=2&rp=5xx", 3)])
async def test_a_503_is_retried_only_when_the_policy_names_5xx(
    receiver: Receiver, fragment: str, attempts: int
) -> None:
    receiver.status = 503
    answer = await text_to(receiver.url("/api/sms") + fragment)
    assert (answer["webhook_status"], answer["webhook_attempts"]) == (503, attempts)
    assert len(receiver.requests) == attempts
    # Each attempt requested and signed the URL without the fragment, as Twilio does.
    plain = receiver.url("/api/sms")
    for request in receiver.requests:
        assert request.url == plain
        assert RequestValidator(AUTH_TOKEN).validate(
            plain, request.fields, request.headers["x-twilio-signature"]
        )
    assert len({r.fields["MessageSid"] for r in receiver.requests}) == 1


async def test_a_bad_override_is_reported_and_the_text_kept() -> None:
    answer = await text_to(dead_url() + "#rc=9")
    assert answer["webhook_status"] is None
    assert "rc" in answer["webhook_error"]
