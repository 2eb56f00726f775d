"""Statuses whose callbacks never came are fetched with Get Message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from adapter.delivery.status_refresh import StatusRefresher
from adapter.store.base import ReplyDraft
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.client import Credentials, TwilioClient

ACCOUNT = "AC" + "1" * 32
SID = "SM" + "5" * 32


def _message(status: str) -> dict[str, object]:
    return {
        "sid": SID,
        "account_sid": ACCOUNT,
        "to": "+15551234567",
        "from": "+15005550006",
        "body": "hi",
        "status": status,
        "direction": "outbound-api",
    }


async def test_unfinished_messages_are_refreshed_and_final_ones_left_alone(tmp_path: Path) -> None:
    requests: list[str] = []

    def twilio(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        return httpx.Response(200, json=_message("delivered"))

    store = SQLiteStore(tmp_path / "refresh.sqlite3")
    await store.open()
    client = TwilioClient(
        Credentials(ACCOUNT, ACCOUNT, "token"),
        "https://api.twilio.test",
        http=httpx.AsyncClient(transport=httpx.MockTransport(twilio)),
    )
    try:
        [row] = await store.enqueue_outbound(
            [ReplyDraft("c", {"to": "+15551234567", "body": "hi"})]
        )
        await store.claim_outbound(1, 60, datetime.now(UTC))
        await store.mark_attempt_started(row, datetime.now(UTC))
        await store.mark_sent(row, SID, "queued")  # and then no callback ever came

        recorded: list[tuple[str, str]] = []

        async def record(sid: str, status: str, code: int | None) -> None:
            recorded.append((sid, status))
            await store.update_status(sid, status, code)

        patient = StatusRefresher(store, client, record, refresh_after=timedelta(hours=1))
        assert await patient.refresh_once() == 0  # not overdue yet: Twilio is not asked
        assert requests == []

        eager = StatusRefresher(store, client, record, refresh_after=timedelta(0))
        assert await eager.refresh_once() == 1
        assert requests == [f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{SID}.json"]
        assert recorded == [(SID, "delivered")]
        saved = await store.get_outbound(row)
        assert saved is not None and saved.twilio_status == "delivered"

        assert await eager.refresh_once() == 0  # final now: never asked again
        assert len(requests) == 1
    finally:
        await client.aclose()
        await store.close()
