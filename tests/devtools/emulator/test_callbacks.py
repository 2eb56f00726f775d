"""Status callbacks: queued -> sent -> delivered, signed like Twilio, never retried."""

from __future__ import annotations

import logging
import socket

import pytest
from twilio.request_validator import RequestValidator

from tests.devtools.emulator.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGES,
    OUR_NUMBER,
    PERSON,
    Emulator,
    Receiver,
    make_config,
    running_emulator,
)

SERVICE_SID = "MG" + "4" * 32


async def test_callbacks_arrive_signed_in_order(emulator: Emulator, receiver: Receiver) -> None:
    callback_url = receiver.url("/status?conversation=42")
    sid = (await emulator.send(StatusCallback=callback_url)).json()["sid"]

    callbacks = [await receiver.next() for _ in range(3)]
    await emulator.state.settle()

    assert [c.fields["MessageStatus"] for c in callbacks] == ["queued", "sent", "delivered"]
    validator = RequestValidator(AUTH_TOKEN)
    for callback in callbacks:
        assert callback.url == callback_url
        assert validator.validate(
            callback_url, callback.fields, callback.headers["x-twilio-signature"]
        )
        assert callback.fields == {
            "SmsSid": sid,
            "SmsStatus": callback.fields["MessageStatus"],
            "MessageStatus": callback.fields["MessageStatus"],
            "To": PERSON,
            "MessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": OUR_NUMBER,
            "ApiVersion": "2010-04-01",
        }
    assert receiver.requests == callbacks  # nothing more
    stored = emulator.state.get(sid)
    assert stored is not None and stored.status == "delivered" and stored.date_sent is not None


async def test_a_messaging_service_message_reports_its_service_and_sender(
    emulator: Emulator, receiver: Receiver
) -> None:
    await emulator.client.post(
        MESSAGES,
        data={
            "To": PERSON,
            "MessagingServiceSid": SERVICE_SID,
            "Body": "hi",
            "StatusCallback": receiver.url(),
        },
    )

    first = await receiver.next()

    assert first.fields["MessageStatus"] == "queued"
    assert (first.fields["MessagingServiceSid"], first.fields["From"]) == (SERVICE_SID, OUR_NUMBER)


async def test_a_failing_receiver_gets_each_callback_once(
    emulator: Emulator, receiver: Receiver
) -> None:
    receiver.status = 500
    sid = (await emulator.send(StatusCallback=receiver.url())).json()["sid"]

    await emulator.state.settle()

    assert [c.fields["MessageStatus"] for c in receiver.requests] == ["queued", "sent", "delivered"]
    stored = emulator.state.get(sid)
    assert stored is not None and stored.status == "delivered"


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/status"


@pytest.mark.parametrize(
    "callback_url",
    [
        pytest.param(_closed_port_url(), id="nobody-listening"),
        pytest.param("not a url", id="malformed"),
    ],
)
async def test_undeliverable_callbacks_are_logged_and_dropped(
    emulator: Emulator, callback_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapter.devtools.emulator")
    sid = (await emulator.send(StatusCallback=callback_url)).json()["sid"]

    await emulator.state.settle()

    stored = emulator.state.get(sid)
    assert stored is not None and stored.status == "delivered"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all(AUTH_TOKEN not in warning for warning in warnings)


async def test_a_shared_key_signs_with_hmac_sha256(receiver: Receiver) -> None:
    async with running_emulator(make_config(webhook_shared_key="shared-secret")) as emulator:
        await emulator.send(StatusCallback=receiver.url())
        callback = await receiver.next()

    signature = callback.headers["x-twilio-signature"]
    assert "algorithm=HMAC_SHA256" in callback.headers["x-twilio-webhooks-signature-settings"]
    assert RequestValidator("shared-secret").validate(
        receiver.url(), callback.fields, signature, algorithm="HMAC_SHA256"
    )
    assert not RequestValidator(AUTH_TOKEN).validate(receiver.url(), callback.fields, signature)


async def test_callback_delay_holds_the_message_between_steps(receiver: Receiver) -> None:
    async with running_emulator(make_config(callback_delay_ms=60000)) as emulator:
        sid = (await emulator.send(StatusCallback=receiver.url())).json()["sid"]
        first = await receiver.next()
        stored = emulator.state.get(sid)

    assert first.fields["MessageStatus"] == "queued"
    assert stored is not None and (stored.status, stored.date_sent) == ("queued", None)
