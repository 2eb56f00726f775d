"""Prometheus metrics at `GET /metrics`: what came in, how the bots did, what Twilio
accepted or refused, and whether the outbox keeps up.

`Metrics` is one running adapter's hooks (`ChannelEvents`, the sender's included) and its
own `CollectorRegistry`, so several apps in one process (tests, a dev server next to a
production one) never share or clash over counters. What the store and the rate limiter
know (outbox depth and age, rate-limit waits) is read when Prometheus scrapes: the
endpoint is async, refreshes a snapshot, then renders it; collectors themselves are sync
and only read that snapshot.

The endpoint asks for the admin token (`Authorization: Bearer ...`) when one is set;
without one it is open, like `/healthz`, for a Prometheus on the same network.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from adapter.delivery.events import ChannelEvents
from adapter.store.base import OutboundJob, Store, StoreError
from adapter.twilio.errors import (
    TwilioApiError,
    TwilioError,
    TwilioRateLimited,
    TwilioServerError,
)
from adapter.twilio.signature import SignatureCheck
from adapter.twilio.statuses import STATUS_RANK

logger = logging.getLogger("adapter.web.metrics")

# The webhook's results, then inbound catch-up's: a text found through List Messages
# whose webhook never reached us, and one found older than SMS_ADAPTER_CATCHUP_MAX_AGE.
INBOUND_RESULTS = (
    "accepted",
    "duplicate",
    "bad_signature",
    "rejected",
    "store_unavailable",
    "caught_up",
    "too_old",
)
SEND_OUTCOMES = ("sent", "adopted", "failed", "dead")
NO_CODE = "none"
# Seconds. Bots that call other services (a model, a CRM) can take tens of seconds.
BOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0)


def _code(code: int | None) -> str:
    return NO_CODE if code is None else str(code)


def _error_kind(error: TwilioError) -> str:
    if isinstance(error, TwilioRateLimited):
        return "rate_limited"
    if isinstance(error, TwilioServerError):
        return "server_error"
    if isinstance(error, TwilioApiError):
        return "rejected"
    return "network"


@runtime_checkable
class WaitCounts(Protocol):
    """A limiter that counts the requests it held back (this process's)."""

    @property
    def waits(self) -> int: ...

    @property
    def wait_seconds(self) -> float: ...


@dataclass(frozen=True)
class ScrapeSnapshot:
    """What the store and the limiter said at the last scrape; None where they could
    not say (the store is down, the limiter keeps no count)."""

    outbox_depth: int | None = None
    oldest_pending_age: float | None = None
    rate_limit_waits: int | None = None
    rate_limit_wait_seconds: float | None = None


class _SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = ScrapeSnapshot()

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if snapshot.outbox_depth is not None:
            yield GaugeMetricFamily(
                "sms_adapter_outbox_depth",
                "Messages in the outbox not yet sent, failed or dead-lettered.",
                value=snapshot.outbox_depth,
            )
        if snapshot.oldest_pending_age is not None:
            yield GaugeMetricFamily(
                "sms_adapter_outbox_oldest_pending_age_seconds",
                "Age of the oldest message still waiting in the outbox (0 when empty).",
                value=snapshot.oldest_pending_age,
            )
        if snapshot.rate_limit_waits is not None:
            yield CounterMetricFamily(
                "sms_adapter_rate_limit_waits",
                "Requests to Twilio that had to wait for the account's rate limits.",
                value=snapshot.rate_limit_waits,
            )
        if snapshot.rate_limit_wait_seconds is not None:
            yield CounterMetricFamily(
                "sms_adapter_rate_limit_wait_seconds",
                "Total time requests to Twilio waited for the account's rate limits.",
                value=snapshot.rate_limit_wait_seconds,
            )


class Metrics(ChannelEvents):
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.inbound_texts = Counter(
            "sms_adapter_inbound_texts",
            "Inbound texts by result: messaging webhooks, and texts found by catch-up.",
            ["result"],
            registry=registry,
        )
        self.signature_rejections = Counter(
            "sms_adapter_signature_rejections",
            "Webhooks and status callbacks refused for a bad or missing Twilio signature.",
            ["path"],
            registry=registry,
        )
        self.bot_handling = Histogram(
            "sms_adapter_bot_handling_seconds",
            "Time a bot took to handle one text (replies are sent afterwards).",
            ["bot"],
            buckets=BOT_BUCKETS,
            registry=registry,
        )
        self.bot_errors = Counter(
            "sms_adapter_bot_errors",
            "Handlers that raised or ran past SMS_ADAPTER_HANDLER_TIMEOUT, by bot and error "
            "(the exception's class name, or timeout).",
            ["bot", "error"],
            registry=registry,
        )
        self.sends = Counter(
            "sms_adapter_sends",
            "Outbox messages by final outcome and Twilio error code.",
            ["outcome", "error_code"],
            registry=registry,
        )
        self.send_latency = Histogram(
            "sms_adapter_send_seconds",
            "From a send attempt's start (rate-limit waits included) to Twilio's answer.",
            buckets=SEND_BUCKETS,
            registry=registry,
        )
        self.send_retries = Counter(
            "sms_adapter_send_retries",
            "Send attempts that failed and were scheduled again, by kind and error code.",
            ["kind", "error_code"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "sms_adapter_dead_letters",
            "Messages given up on after too many attempts or too long a wait.",
            registry=registry,
        )
        self.status_callbacks = Counter(
            "sms_adapter_status_callbacks",
            "Delivery statuses Twilio reported (callbacks and refreshes), by status.",
            ["status"],
            registry=registry,
        )
        self.retention_deletions = Counter(
            "sms_adapter_retention_deleted_rows",
            "Rows deleted for being older than SMS_ADAPTER_RETENTION (texts, replies, "
            "history, exchange records).",
            registry=registry,
        )
        # Zeros from the start: `increase()` and alerts need a series before the first event.
        for result in INBOUND_RESULTS:
            self.inbound_texts.labels(result)
        for outcome in SEND_OUTCOMES:
            self.sends.labels(outcome, NO_CODE)
        self._snapshot = _SnapshotCollector()
        registry.register(self._snapshot)
        # The series every text touches, bound once: `labels()` takes a lock and builds
        # a key on every call.
        self._inbound_by_result = {r: self.inbound_texts.labels(r) for r in INBOUND_RESULTS}
        self._inbound_other = self.inbound_texts.labels("other")
        self._sent = self.sends.labels("sent", NO_CODE)

    # -- hooks --------------------------------------------------------------------------

    def inbound(self, result: str) -> None:
        self._inbound_by_result.get(result, self._inbound_other).inc()

    def signature_rejected(self, path: str, check: SignatureCheck) -> None:
        self.signature_rejections.labels(path).inc()

    def status_callback(self, status: str) -> None:
        # Signed by Twilio, but still text from outside: keep the label set bounded.
        self.status_callbacks.labels(status if status in STATUS_RANK else "other").inc()

    def bot_handled(self, bot: str, seconds: float) -> None:
        self.bot_handling.labels(bot).observe(seconds)

    def bot_error(self, bot: str, kind: str, error: BaseException, *, answered: bool) -> None:
        self.bot_errors.labels(bot, kind).inc()

    def sent(self, job: OutboundJob, seconds: float) -> None:
        self._sent.inc()
        self.send_latency.observe(seconds)

    def adopted(self, job: OutboundJob) -> None:
        self.sends.labels("adopted", NO_CODE).inc()

    def retention_deleted(self, rows: int) -> None:
        self.retention_deletions.inc(rows)

    def failed(self, job: OutboundJob, code: int | None, dead: bool) -> None:
        self.sends.labels("dead" if dead else "failed", _code(code)).inc()
        if dead:
            self.dead_letters.inc()

    def retried(self, job: OutboundJob, error: TwilioError) -> None:
        code = error.code if isinstance(error, TwilioApiError) else None
        self.send_retries.labels(_error_kind(error), _code(code)).inc()

    # -- scrape -------------------------------------------------------------------------

    async def refresh(self, store: Store, limiter: object) -> None:
        """Read what only the store and the limiter know, for the next render."""
        depth: int | None = None
        age: float | None = None
        try:
            stats = await store.outbox_stats()
        except StoreError as error:
            # Absent rather than stale: an alert on `absent(...)` then notices.
            logger.warning("metrics: could not read the outbox: %s", error)
        else:
            depth = stats.depth
            age = 0.0
            if stats.oldest_pending_at is not None:
                age = max(0.0, (datetime.now(UTC) - stats.oldest_pending_at).total_seconds())
        # AccountLimiter and PostgresLimiter count; the `Limiter` protocol does not promise it.
        counts = limiter if isinstance(limiter, WaitCounts) else None
        self._snapshot.snapshot = ScrapeSnapshot(
            outbox_depth=depth,
            oldest_pending_age=age,
            rate_limit_waits=counts.waits if counts is not None else None,
            rate_limit_wait_seconds=counts.wait_seconds if counts is not None else None,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics", "ScrapeSnapshot"]
