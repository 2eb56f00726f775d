"""An outbound message's life after Send Message: [scheduled ->] queued -> sent -> delivered.

Each step updates the stored message and, if the message has a StatusCallback, posts
Twilio's signed status form there. Like Twilio, a callback that fails is logged and
dropped, never retried, and never stops the message from moving on.

A scheduled message waits for its SendAt on the emulator's clock (`EmulatorState.advance`
moves it in tests) unless it is canceled first. A queued message waits in the queue as
long as the emulator holds it (`--latency-ms`, a slow fault); if that outlasts its
ValidityPeriod it fails with 30036 instead of being sent.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import httpx

from adapter.devtools.emulator import errors
from adapter.devtools.emulator.config import EmulatorConfig
from adapter.devtools.emulator.signing import Signer, post_signed_form
from adapter.devtools.emulator.state import EmulatorState, StoredMessage
from adapter.twilio.addresses import on_channel_of
from adapter.twilio.client import API_VERSION

logger = logging.getLogger("adapter.devtools.emulator")


def status_callback_form(message: StoredMessage, account_sid: str) -> dict[str, str]:
    form = {
        "SmsSid": message.sid,
        "SmsStatus": message.status,
        "MessageStatus": message.status,
        "To": message.to,
        "MessageSid": message.sid,
        "AccountSid": account_sid,
        "From": message.from_ or "",
        "ApiVersion": API_VERSION,
    }
    if message.messaging_service_sid is not None:
        form["MessagingServiceSid"] = message.messaging_service_sid
    if message.error_code is not None:
        form["ErrorCode"] = str(message.error_code)
    return form


async def run_outbound(
    state: EmulatorState,
    config: EmulatorConfig,
    signer: Signer,
    sid: str,
    *,
    held_ms: int = 0,
) -> None:
    message = state.get(sid)
    if message is not None and message.status == "scheduled" and message.send_at is not None:
        await notify(state, config, signer, message)
        await state.sleep_until(message.send_at)
        message = state.get(sid)
        if message is None or message.status != "scheduled":
            return  # canceled (or the state was cleared) before its time
        message = state.set_status(sid, "accepted" if message.from_ is None else "queued")
    if message is not None and message.status == "accepted":
        # A Messaging Service without a From: the service picks its first sender.
        sender = on_channel_of(config.service_sender(message.messaging_service_sid), message.to)
        message = state.set_status(sid, "queued", from_=sender)
    if message is None:
        return
    queued_at = state.clock()
    await notify(state, config, signer, message)
    if held_ms:
        await state.sleep_until(queued_at + timedelta(milliseconds=held_ms))
    if message.validity_period is not None and state.clock() - queued_at > timedelta(
        seconds=message.validity_period
    ):
        message = state.set_status(
            sid, "failed", error=(errors.VALIDITY_PERIOD_EXPIRED, "Validity Period Expired")
        )
        if message is not None:
            await notify(state, config, signer, message)
        return
    for status in ("sent", "delivered"):
        await asyncio.sleep(config.callback_delay_ms / 1000)
        message = state.set_status(sid, status, sent=status == "sent")
        if message is None:
            return  # the state was cleared meanwhile
        await notify(state, config, signer, message)


async def notify(
    state: EmulatorState, config: EmulatorConfig, signer: Signer, message: StoredMessage
) -> None:
    url = message.status_callback
    if not url:
        return
    form = status_callback_form(message, config.account_sid)
    try:
        async with state.posting:
            response = await post_signed_form(state.http_client(), url, form, signer)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        logger.warning(
            "status callback %s for %s to %s failed: %s",
            message.status,
            message.sid,
            url,
            type(error).__name__,
        )
        return
    if not response.is_success:
        logger.warning(
            "status callback %s for %s to %s answered HTTP %d",
            message.status,
            message.sid,
            url,
            response.status_code,
        )
