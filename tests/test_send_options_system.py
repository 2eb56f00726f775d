"""Every Send Message option, through `sms-adapter serve` to `sms-adapter emulator`, both
real processes: a bot replies with each option, and the test checks what Twilio (the
emulator) received and did, and what the adapter recorded.

The route sends through a Messaging Service with `[routes.send] validity_period = 900`,
and SMS_ADAPTER_STATUS_VIA_APPLICATION makes sends carry ApplicationSid: statuses come
back through the TwiML App's status callback URL, not StatusCallback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from tests.processes import Account, adapter_process, emulator_process, free_port
from tests.send_options_bot import TEMPLATE
from tests.servers import wait_for

ACCOUNT = Account(sid="AC" + "6" * 32, auth_token="send-options-token-4d1f")
OURS = "+15005550006"
PERSON = "+15557000001"
SERVICE = "MG" + "6" * 32
APP = "AP" + "6" * 32
ADMIN = "send-options-admin"
KEYWORDS = ["CODE", "QUOTES", "LINK", "MMS", "TEMPLATE", "REMIND", "hello"]


async def outbound(client: httpx.AsyncClient, emulator: str) -> dict[str, dict[str, Any]]:
    """The replies at the emulator, by the first word of the text they answer."""
    messages = (await client.get(f"{emulator}/_emulator/messages")).json()
    replies = [m for m in messages if m["direction"].startswith("outbound")]
    return dict(zip(KEYWORDS, replies, strict=False)) if len(replies) == len(KEYWORDS) else {}


async def test_each_option_reaches_twilio_from_a_served_bot(tmp_path: Path) -> None:
    emulator_port, adapter_port = free_port(), free_port()
    adapter_url = f"http://127.0.0.1:{adapter_port}"
    config = tmp_path / "routes.toml"
    config.write_text(
        f"""
[[routes]]
default = true
bot = "tests.send_options_bot:router"
send_via_messaging_service = "{SERVICE}"

[routes.send]
validity_period = 900
"""
    )
    emulator = emulator_process(
        emulator_port,
        account=ACCOUNT,
        webhook_url=f"{adapter_url}/api/sms",
        numbers=[OURS],
        log_dir=tmp_path,
        extra_args=[
            "--content-template",
            f"{TEMPLATE}=Hi {{{{1}}}}, your table is ready.",
            "--application",
            f"{APP}={adapter_url}/api/sms/status",
        ],
    )
    adapter = adapter_process(
        adapter_port,
        account=ACCOUNT,
        twilio_base_url=emulator.url,
        database=tmp_path / "adapter.sqlite3",
        bots="bots.echo:router",  # replaced by the config file's routes
        log_dir=tmp_path,
        config=config,
        settings={
            "SMS_ADAPTER_STATUS_VIA_APPLICATION": APP,
            "SMS_ADAPTER_ADMIN_TOKEN": ADMIN,
        },
    )
    auth = {"Authorization": f"Bearer {ADMIN}"}
    try:
        async with asyncio.timeout(60), httpx.AsyncClient(timeout=10) as client:
            emulator.start()
            adapter.start()
            await asyncio.gather(emulator.wait_ready(), adapter.wait_ready())
            for keyword in KEYWORDS:  # one at a time: replies come back in this order
                answer = await client.post(
                    f"{emulator.url}/_emulator/inbound", data={"From": PERSON, "Body": keyword}
                )
                assert answer.json()["webhook_status"] == 200, answer.text

                async def replied(n: int = KEYWORDS.index(keyword) + 1) -> bool:
                    messages = (await client.get(f"{emulator.url}/_emulator/messages")).json()
                    return bool(sum(m["direction"] != "inbound" for m in messages) >= n)

                await wait_for(replied, timeout=20)
            replies = await wait_for(lambda: outbound(client, emulator.url))

            # The adapter heard each status through the TwiML App's callback URL.
            async def all_delivered() -> list[dict[str, Any]] | None:
                records = [
                    (await client.get(f"{adapter.url}/api/messages/{n}", headers=auth)).json()
                    for n in range(1, len(KEYWORDS) + 1)
                ]
                done = [r for r in records if r["status"] in ("delivered", "scheduled")]
                return records if len(done) == len(KEYWORDS) else None

            records = await wait_for(all_delivered, timeout=20)
            scheduled = (
                await client.get(f"{adapter.url}/api/messages/scheduled", headers=auth)
            ).json()

            # Time passes at Twilio: the reminder goes out, and the adapter hears it.
            await client.post(f"{emulator.url}/_emulator/clock", json={"advance_seconds": 3600})

            async def reminder_delivered() -> dict[str, Any] | None:
                [reminder] = [r for r in records if r["body"].startswith("Reminder")]
                record = (
                    await client.get(f"{adapter.url}/api/messages/{reminder['id']}", headers=auth)
                ).json()
                return record if record["status"] == "delivered" else None

            reminder_record = await wait_for(reminder_delivered, timeout=20)
            after = await outbound(client, emulator.url)
    except BaseException:
        print(f"adapter log:\n{adapter.log_tail()}\n\nemulator log:\n{emulator.log_tail()}")
        raise
    finally:
        adapter.stop()
        emulator.stop()
    adapter_log = adapter.log_tail(400)

    for keyword, reply in replies.items():
        assert reply["application_sid"] == APP, keyword
        assert reply["messaging_service_sid"] == SERVICE, keyword
        assert reply["from"] == OURS, keyword
    code = replies["CODE"]
    assert (code["body"], code["max_price"]) == ("Your code is 123456", "0.05")
    assert 590 <= code["validity_period"] <= 600  # the reply's own, less its time queued
    assert 890 <= replies["hello"]["validity_period"] <= 900  # the route's default
    quotes = replies["QUOTES"]
    assert (quotes["body"], quotes["smart_encoded"]) == ('"Smart" quotes - and more...', True)
    assert quotes["num_segments"] == "1"
    assert replies["LINK"]["shorten_urls"] is True
    assert replies["MMS"]["send_as_mms"] is True
    template = replies["TEMPLATE"]
    assert (template["body"], template["content_sid"]) == ("Hi Ana, your table is ready.", TEMPLATE)
    assert replies["REMIND"]["status"] == "scheduled"
    assert replies["REMIND"]["schedule_type"] == "fixed"
    assert [m["body"] for m in scheduled["messages"]] == [
        "Reminder: your appointment is in an hour"
    ]
    assert after["REMIND"]["status"] == "delivered"
    assert reminder_record["send_at"] == scheduled["messages"][0]["send_at"]
    assert "MaxPrice, which Twilio ignores since 2024-06-03" in adapter_log
