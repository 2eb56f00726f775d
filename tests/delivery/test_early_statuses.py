"""A status callback that beats the sender's own record of the SID is not lost."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from adapter.runtime.channel import build_channel
from adapter.runtime.settings import Settings
from adapter.store.base import ReplyDraft
from adapter.twilio.messages import OutboundMessage
from tests import status_bot
from tests.servers import wait_for

SID = "SM" + "7" * 32
ACCOUNT = "AC" + "1" * 32


async def test_a_status_arriving_before_the_sid_is_recorded_is_applied_once_it_is(
    tmp_path: Path,
) -> None:
    status_bot.statuses.clear()
    channel = build_channel(
        Settings(
            account_sid=ACCOUNT,
            auth_token="token",
            database=str(tmp_path / "early.sqlite3"),
            bots="tests.status_bot:router",
        )
    )
    await channel.store.open()
    try:
        reply = OutboundMessage(to="+15551234567", body="hello", from_="+15005550006")
        [row] = await channel.store.enqueue_outbound(
            [ReplyDraft(str(reply.conversation), reply.to_json())]
        )
        await channel.store.claim_outbound(1, 60, datetime.now(UTC))
        await channel.store.mark_attempt_started(row, datetime.now(UTC))

        # Twilio's callback wins the race against the answer to Send Message.
        await channel.statuses.record(SID, "sent", None)
        assert status_bot.statuses == []
        await channel.store.mark_sent(row, SID, "queued")

        async def applied() -> bool:
            record = await channel.store.get_outbound(row)
            return record is not None and record.twilio_status == "sent"

        await wait_for(applied)
        assert status_bot.statuses == [("hello", "sent")]
    finally:
        await channel.statuses.aclose()
        await channel.store.close()


async def test_a_status_for_a_message_that_is_not_ours_is_given_up(tmp_path: Path) -> None:
    from adapter.delivery.early_statuses import EarlyStatuses

    attempts: list[str] = []

    async def never_known(sid: str, status: str, code: int | None) -> bool:
        attempts.append(sid)
        return False

    early = EarlyStatuses(never_known, delays=(0.01, 0.01, 0.01))
    early.hold(SID, "delivered", None)
    await wait_for(lambda: len(attempts) == 3)
    await early.aclose()
    assert attempts == [SID] * 3
