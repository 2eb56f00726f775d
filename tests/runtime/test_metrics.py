"""GET /metrics: the counters an operator watches move as the adapter works.

The scripted run is `sms-adapter dev` (adapter + emulator on one real uvicorn): texts
in, replies out and delivered, a duplicate delivery, forged signatures; then a scrape,
parsed with prometheus_client's own parser. The hooks that a healthy run never reaches
(failures, dead letters, retries, rate-limit waits, a store that is down) are driven
directly, one row each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapter.cli.dev import DEV_ACCOUNT_SID, DEV_NUMBER, create_dev_app
from adapter.ratelimit import AccountLimiter, Rate
from adapter.runtime.metrics import Metrics
from adapter.runtime.settings import Settings
from adapter.store.base import OutboundJob, ReplyDraft
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.errors import (
    TwilioApiError,
    TwilioRateLimited,
    TwilioRequestRejected,
    TwilioServerError,
    TwilioTransportError,
)
from tests.servers import bound_socket, serve, wait_for

PEOPLE = ("+15551234567", "+15557654321")
ADMIN_TOKEN = "metrics-admin-token"
# Each sample's value, by metric name and label set.
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: str) -> Scrape:
    """Every sample of a scrape, by name and labels."""
    found: Scrape = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scraped(metrics: Metrics) -> Scrape:
    """What Prometheus would read from `metrics` now."""
    return samples(metrics.render().decode())


def value(scrape: Scrape, name: str, **labels: str) -> float:
    return scrape[(name, frozenset(labels.items()))]


@dataclass
class Running:
    base: str
    dev: Any


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    sock, base = bound_socket()
    dev = create_dev_app(
        Settings(database=str(tmp_path / "adapter.sqlite3"), bots="bots.echo:router"), base
    )
    async with serve(dev.app, sock):
        yield Running(base, dev)


async def _outbound(client: httpx.AsyncClient, base: str) -> list[dict[str, Any]]:
    messages = (await client.get(f"{base}/_emulator/messages")).json()
    return [m for m in messages if m["direction"].startswith("outbound")]


async def test_a_scripted_run_moves_the_counters(running: Running) -> None:
    base = running.base
    async with httpx.AsyncClient(timeout=10) as client:
        before = samples((await client.get(f"{base}/metrics")).text)
        sids = []
        for person, body in [(PEOPLE[0], "one"), (PEOPLE[1], "two"), (PEOPLE[0], "three")]:
            answer = await client.post(
                f"{base}/_emulator/inbound", data={"From": person, "Body": body}
            )
            sids.append(answer.json()["sid"])
        duplicate = await client.post(
            f"{base}/_emulator/inbound",
            data={"From": PEOPLE[0], "Body": "one", "MessageSid": sids[0]},
        )
        assert duplicate.json()["webhook_status"] == 200
        forged = {"MessageSid": "SM" + "f" * 32, "AccountSid": DEV_ACCOUNT_SID, "Body": "x"}
        forged |= {"From": PEOPLE[0], "To": DEV_NUMBER, "MessageStatus": "delivered"}
        for path in ("/api/sms", "/api/sms/status"):
            refused = await client.post(
                f"{base}{path}", data=forged, headers={"X-Twilio-Signature": "Zm9yZ2Vk"}
            )
            assert refused.status_code == 403

        async def all_delivered() -> bool:
            outbound = await _outbound(client, base)
            return len(outbound) == 3 and all(m["status"] == "delivered" for m in outbound)

        await wait_for(all_delivered)
        await running.dev.emulator.settle()  # every status callback has been answered
        response = await client.get(f"{base}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    after = samples(response.text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - before.get((name, frozenset(labels.items())), 0.0)

    assert moved("sms_adapter_inbound_texts_total", result="accepted") == 3
    assert moved("sms_adapter_inbound_texts_total", result="duplicate") == 1
    assert moved("sms_adapter_inbound_texts_total", result="bad_signature") == 1
    assert moved("sms_adapter_inbound_texts_total", result="rejected") == 0
    assert moved("sms_adapter_signature_rejections_total", path="/api/sms") == 1
    assert moved("sms_adapter_signature_rejections_total", path="/api/sms/status") == 1
    assert moved("sms_adapter_bot_handling_seconds_count", bot="bots.echo:router") == 3
    assert moved("sms_adapter_sends_total", outcome="sent", error_code="none") == 3
    assert moved("sms_adapter_sends_total", outcome="dead", error_code="none") == 0
    assert moved("sms_adapter_send_seconds_count") == 3
    for status in ("queued", "sent", "delivered"):
        assert moved("sms_adapter_status_callbacks_total", status=status) == 3
    assert value(after, "sms_adapter_outbox_depth") == 0
    assert value(after, "sms_adapter_outbox_oldest_pending_age_seconds") == 0
    assert value(after, "sms_adapter_rate_limit_waits_total") == 0


@pytest.mark.parametrize(
    ("admin_token", "authorization", "status"),
    [
        (None, None, 200),  # no admin token configured: open, like /healthz
        (ADMIN_TOKEN, None, 401),
        (ADMIN_TOKEN, "Bearer wrong-token", 401),
        (ADMIN_TOKEN, f"Basic {ADMIN_TOKEN}", 401),
        (ADMIN_TOKEN, f"Bearer {ADMIN_TOKEN}", 200),
    ],
)
async def test_the_admin_token_guards_metrics_when_set(
    tmp_path: Path, admin_token: str | None, authorization: str | None, status: int
) -> None:
    sock, base = bound_socket()
    settings = Settings(database=str(tmp_path / "adapter.sqlite3"), admin_token=admin_token)
    dev = create_dev_app(settings, base)
    headers = {"Authorization": authorization} if authorization else {}
    async with serve(dev.app, sock), httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{base}/metrics", headers=headers)
    assert response.status_code == status
    assert ("sms_adapter_inbound_texts_total" in response.text) == (status == 200)
    assert ADMIN_TOKEN not in response.text


# -- the hooks a healthy run does not reach --------------------------------------------------

JOB = OutboundJob(
    id=1,
    conversation=f"{DEV_NUMBER}|{PEOPLE[0]}",
    payload={},
    created_at=datetime(2024, 1, 1, tzinfo=UTC),
    attempts=0,
    in_doubt_since=None,
)
Sample = tuple[str, dict[str, str]]


def _api_error(kind: type[TwilioApiError], status: int, code: int | None) -> TwilioApiError:
    return kind(operation="send", status=status, code=code, message="refused")


HOOKS: list[tuple[str, Callable[[Metrics], None], list[Sample]]] = [
    (
        "a permanent refusal",
        lambda m: m.failed(JOB, 21211, dead=False),
        [("sms_adapter_sends_total", {"outcome": "failed", "error_code": "21211"})],
    ),
    (
        "a dead letter",
        lambda m: m.failed(JOB, None, dead=True),
        [
            ("sms_adapter_sends_total", {"outcome": "dead", "error_code": "none"}),
            ("sms_adapter_dead_letters_total", {}),
        ],
    ),
    (
        "an adopted in-doubt send",
        lambda m: m.adopted(JOB),
        [("sms_adapter_sends_total", {"outcome": "adopted", "error_code": "none"})],
    ),
    (
        "a retry after 429",
        lambda m: m.retried(JOB, _api_error(TwilioRateLimited, 429, 20429)),
        [("sms_adapter_send_retries_total", {"kind": "rate_limited", "error_code": "20429"})],
    ),
    (
        "a retry after 500",
        lambda m: m.retried(JOB, _api_error(TwilioServerError, 500, None)),
        [("sms_adapter_send_retries_total", {"kind": "server_error", "error_code": "none"})],
    ),
    (
        "a retry after a retryable 4xx",
        lambda m: m.retried(JOB, _api_error(TwilioRequestRejected, 400, 30001)),
        [("sms_adapter_send_retries_total", {"kind": "rejected", "error_code": "30001"})],
    ),
    (
        "a retry after a dropped connection",
        lambda m: m.retried(
            JOB, TwilioTransportError(operation="send", detail="reset", ambiguous=True)
        ),
        [("sms_adapter_send_retries_total", {"kind": "network", "error_code": "none"})],
    ),
    (
        "a status Twilio never documented",
        lambda m: m.status_callback("teleported"),
        [("sms_adapter_status_callbacks_total", {"status": "other"})],
    ),
]


@pytest.mark.parametrize(("event", "hook", "expected"), HOOKS, ids=[row[0] for row in HOOKS])
def test_each_hook_counts_once_under_its_labels(
    event: str, hook: Callable[[Metrics], None], expected: list[Sample]
) -> None:
    metrics = Metrics()
    hook(metrics)
    scrape = scraped(metrics)
    for name, labels in expected:
        assert value(scrape, name, **labels) == 1
    counted = sum(v for (n, _), v in scrape.items() if n.endswith("_total"))
    assert counted == len(expected)  # nothing else moved


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.inbound("accepted")
    assert value(scraped(first), "sms_adapter_inbound_texts_total", result="accepted") == 1
    assert value(scraped(second), "sms_adapter_inbound_texts_total", result="accepted") == 0


async def test_scrape_time_values_come_from_the_store_and_the_limiter(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "adapter.sqlite3"))
    await store.open()
    limiter = AccountLimiter(max_concurrency=1, rate=Rate(100, 1.0))
    try:
        await store.enqueue_outbound(
            [ReplyDraft(conversation=JOB.conversation, payload={"to": PEOPLE[0], "body": "hi"})]
        )
        async with limiter.slot():
            waiting = asyncio.create_task(_take_slot(limiter))
            await asyncio.sleep(0)  # it runs until it blocks on the only slot, held here
        await waiting
        metrics = Metrics()
        await metrics.refresh(store, limiter)
    finally:
        await store.close()
    scrape = scraped(metrics)
    assert value(scrape, "sms_adapter_outbox_depth") == 1
    assert value(scrape, "sms_adapter_outbox_oldest_pending_age_seconds") >= 0
    assert value(scrape, "sms_adapter_rate_limit_waits_total") == 1
    assert value(scrape, "sms_adapter_rate_limit_wait_seconds_total") >= 0


async def _take_slot(limiter: AccountLimiter) -> None:
    async with limiter.slot():
        pass


async def test_a_store_that_is_down_leaves_the_outbox_gauges_out(tmp_path: Path) -> None:
    metrics = Metrics()
    await metrics.refresh(SQLiteStore(str(tmp_path / "never-opened.sqlite3")), object())
    names = {name for name, _ in scraped(metrics)}
    assert "sms_adapter_outbox_depth" not in names
    assert "sms_adapter_rate_limit_waits_total" not in names  # this limiter keeps no count
    assert "sms_adapter_inbound_texts_total" in names  # the rest still renders
