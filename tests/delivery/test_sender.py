"""The sender: outbox → Twilio's Send Message, exactly once.

A real `TwilioClient` talks to `FakeTwilio` through `httpx.MockTransport`, the outbox is a
real `SQLiteStore`, and time is a fake clock the test moves: retry times are asserted to
the microsecond and nothing sleeps. `Rig.drain` plays the claim loop deterministically
(claim what is due at the fake time, deliver it, move time on when nothing is due); one
test at the end runs the real claim loop instead.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from adapter.delivery.opt_outs import OptOuts
from adapter.delivery.retry import RetryPolicy
from adapter.delivery.sender import LEASE_SECONDS, Sender
from adapter.ratelimit import AccountLimiter, Rate
from adapter.store.base import OutboundJob, OutboundRecord, ReplyDraft
from adapter.store.sqlite import SQLiteStore
from adapter.twilio.client import Credentials, TwilioClient
from adapter.twilio.messages import ConversationKey, OutboundMessage
from adapter.twilio.resources import format_rfc2822
from adapter.twilio.send_options import SendOptions
from tests.servers import wait_for

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "durability-auth-token-5c1e9a"  # a secret: must never reach a log line
BASE_URL = "https://api.twilio.test"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
OURS = "+15005550006"
ALICE = "+15551230001"
BOB = "+15551230002"
STATUS_CALLBACK = "https://bot.example.com/api/sms/status"
SEED = 20240501


# --- a fake Twilio behind MockTransport ----------------------------------------------


@dataclass(frozen=True)
class Accept:
    """Twilio creates the message and answers 201, as it does unless told otherwise."""


@dataclass(frozen=True)
class Reject:
    """Twilio answers with an error and creates nothing."""

    status: int
    code: int | None = None
    retry_after: str | None = None


@dataclass(frozen=True)
class Lost:
    """The connection fails with `error`, after Twilio created the message if `created`."""

    error: type[httpx.TransportError]
    created: bool


Outcome = Accept | Reject | Lost


@dataclass(frozen=True)
class Seen:
    """A request as Twilio saw it: ("POST", body) for a create, ("GET", "") for a list."""

    method: str
    body: str


class FakeTwilio:
    """Send and List Messages for one account, with failures planned per message body."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._plans: dict[str, list[Outcome]] = {}
        self.messages: list[dict[str, Any]] = []  # oldest first
        self.requests: list[Seen] = []
        self.forms: list[dict[str, str]] = []  # of every create

    def plan(self, body: str, *outcomes: Outcome) -> None:
        """The next creates of `body` go like `outcomes`, in order; later ones succeed."""
        self._plans.setdefault(body, []).extend(outcomes)

    def add(self, to: str, body: str, *, created: datetime | None = None) -> dict[str, Any]:
        """A message Twilio holds, as if created by a Send Message request."""
        sid = f"SM{len(self.messages):032x}"
        message = {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "to": to,
            "from": OURS,
            "body": body,
            "status": "queued",
            "direction": "outbound-api",
            "date_created": format_rfc2822(created or self._clock()),
            "date_sent": None,
            "num_segments": "1",
            "num_media": "0",
        }
        self.messages.append(message)
        return message

    def bodies_to(self, to: str) -> list[str]:
        return [m["body"] for m in self.messages if m["to"] == to]

    def posts(self, body: str | None = None) -> list[Seen]:
        return [s for s in self.requests if s.method == "POST" and body in (None, s.body)]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == MESSAGES_PATH, request.url
        if request.method == "GET":
            self.requests.append(Seen("GET", ""))
            return self._list(request)
        form = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        self.requests.append(Seen("POST", form["Body"]))
        self.forms.append(form)
        plan = self._plans.get(form["Body"])
        outcome = plan.pop(0) if plan else None
        if isinstance(outcome, Reject):
            return _error_response(outcome)
        if isinstance(outcome, Lost) and not outcome.created:
            raise outcome.error("the connection went away", request=request)
        created = self.add(form["To"], form["Body"])
        if isinstance(outcome, Lost):
            raise outcome.error("the connection went away", request=request)
        return httpx.Response(201, json=created)

    def _list(self, request: httpx.Request) -> httpx.Response:
        to, from_ = request.url.params.get("To"), request.url.params.get("From")
        matching = [
            m
            for m in reversed(self.messages)  # newest first, as Twilio lists
            if to in (None, m["to"]) and from_ in (None, m["from"])
        ]
        return httpx.Response(200, json={"messages": matching, "next_page_uri": None})


def _error_response(reject: Reject) -> httpx.Response:
    headers = {"Retry-After": reject.retry_after} if reject.retry_after else {}
    body = {"code": reject.code, "message": "refused", "status": reject.status}
    return httpx.Response(reject.status, json=body, headers=headers)


# --- clocks ------------------------------------------------------------------------


class FakeClock:
    """The sender's wall clock. It starts at the real time because the store stamps
    rows with the real time when they are added, and age is measured from there."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeMonotonic:
    """The limiter's clock; its sleeps are recorded and pass at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- the rig -----------------------------------------------------------------------


@dataclass
class Rig:
    path: Path
    policy: RetryPolicy
    twilio: FakeTwilio
    clock: FakeClock
    monotonic: FakeMonotonic
    limiter: AccountLimiter
    http: httpx.AsyncClient
    store: SQLiteStore = field(init=False)
    sender: Sender = field(init=False)
    # A twin of the sender's random source: the same draws give the same jitter.
    jitter: random.Random = field(default_factory=lambda: random.Random(SEED))
    # What the sender told the bots' status handlers of replies it gave up on unsent.
    unsent: list[tuple[str, OutboundMessage, str]] = field(default_factory=list)
    application_sid: str | None = None

    async def open(self) -> None:
        """Open the store and make a sender, as a starting process does."""
        self.store = SQLiteStore(self.path)
        await self.store.open()
        self.sender = Sender(
            self.store,
            TwilioClient(
                Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), BASE_URL, http=self.http
            ),
            self.limiter,
            self.policy,
            status_callback_url=None if self.application_sid else STATUS_CALLBACK,
            application_sid=self.application_sid,
            concurrency=4,
            opt_outs=OptOuts(self.store),
            clock=self.clock,
            rng=random.Random(SEED),
            on_unsent=self._unsent,
        )

    async def _unsent(self, conversation: str, message: OutboundMessage, reason: str) -> None:
        self.unsent.append((conversation, message, reason))

    async def restart(self) -> None:
        """A new process on the same database: a new store object and a new sender."""
        await self.store.close()
        await self.open()

    async def enqueue(
        self, *bodies: str, to: str = ALICE, options: SendOptions | None = None
    ) -> list[int]:
        conversation = str(ConversationKey(ours=OURS, person=to))
        drafts = [
            ReplyDraft(
                conversation,
                OutboundMessage(
                    to=to, body=body, from_=OURS, options=options or SendOptions()
                ).to_json(),
            )
            for body in bodies
        ]
        return await self.store.enqueue_outbound(drafts)

    async def claim_due(self) -> list[OutboundJob]:
        return await self.store.claim_outbound(10, LEASE_SECONDS, self.clock())

    async def deliver_due(self) -> list[OutboundJob]:
        jobs = await self.claim_due()
        await asyncio.gather(*(self.sender.deliver(job) for job in jobs))
        return jobs

    async def drain(self, max_rounds: int = 50) -> None:
        """Deliver until the outbox is empty, moving time on whenever nothing is due."""
        for _ in range(max_rounds):
            if await self.deliver_due():
                continue
            if (await self.store.outbox_stats()).depth == 0:
                return
            self.clock.advance(self.policy.max_delay)
        raise AssertionError("the outbox did not drain")

    async def record(self, outbox_id: int) -> OutboundRecord:
        record = await self.store.get_outbound(outbox_id)
        assert record is not None
        return record


RigFactory = Callable[[RetryPolicy], Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[RigFactory]:
    rigs: list[Rig] = []

    async def make(policy: RetryPolicy) -> Rig:
        clock = FakeClock()
        twilio = FakeTwilio(clock)
        monotonic = FakeMonotonic()
        rig = Rig(
            path=tmp_path / "outbox.sqlite3",
            policy=policy,
            twilio=twilio,
            clock=clock,
            monotonic=monotonic,
            limiter=AccountLimiter(
                max_concurrency=10,
                rate=Rate(1000, 1.0),
                clock=monotonic,
                sleep=monotonic.sleep,
            ),
            http=httpx.AsyncClient(transport=httpx.MockTransport(twilio)),
        )
        await rig.open()
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.store.close()
        await rig.http.aclose()


@pytest.fixture
async def rig(make_rig: RigFactory) -> Rig:
    return await make_rig(RetryPolicy(base_delay=1.0, max_delay=60.0))


# --- the tests -----------------------------------------------------------------------


async def test_a_sent_reply_keeps_twilios_sid(rig: Rig) -> None:
    [outbox_id] = await rig.enqueue("hello")

    await rig.deliver_due()

    record = await rig.record(outbox_id)
    [message] = rig.twilio.messages
    assert (record.state, record.message_sid, record.twilio_status) == (
        "sent",
        message["sid"],
        "queued",
    )
    assert (message["to"], message["from"], message["body"]) == (ALICE, OURS, "hello")
    assert rig.twilio.requests == [Seen("POST", "hello")]
    assert rig.twilio.forms[0]["StatusCallback"] == STATUS_CALLBACK


async def test_429_retries_no_earlier_than_retry_after_and_slows_every_request(
    rig: Rig,
) -> None:
    rig.twilio.plan("hello", Reject(429, 20429, retry_after="5"))
    [outbox_id] = await rig.enqueue("hello")

    await rig.deliver_due()

    assert (await rig.record(outbox_id)).state == "pending"
    # The limiter pauses everything for Retry-After, whatever the request.
    async with rig.limiter.slot(None):
        pass
    assert rig.monotonic.sleeps == [5.0]
    rig.clock.advance(4.999_999)
    assert await rig.claim_due() == []
    rig.clock.advance(0.000_001)
    await rig.deliver_due()
    assert (await rig.record(outbox_id)).state == "sent"
    assert rig.twilio.posts() == [Seen("POST", "hello")] * 2


@pytest.mark.parametrize(
    "failure",
    [Reject(500, 20500), Reject(503), Reject(400, 21611)],
    ids=["500", "503 without a Twilio code", "21611 queue full"],
)
async def test_transient_errors_are_retried_with_growing_jittered_backoff(
    rig: Rig, failure: Reject
) -> None:
    rig.twilio.plan("hello", failure, failure)
    [outbox_id] = await rig.enqueue("hello")

    for attempts in (1, 2):
        failed_at = rig.clock()
        await rig.deliver_due()
        record = await rig.record(outbox_id)
        assert (record.state, record.attempts) == ("pending", attempts)
        assert f"HTTP {failure.status}" in (record.error_message or "")
        due = failed_at + timedelta(seconds=rig.policy.backoff(attempts, rig.jitter))
        rig.clock.now = due - timedelta(microseconds=1)
        assert await rig.claim_due() == [], "retried before its backoff was over"
        rig.clock.now = due

    await rig.deliver_due()
    assert (await rig.record(outbox_id)).state == "sent"
    # Errors with an answer prove nothing was created: no need to look before resending.
    assert rig.twilio.requests == [Seen("POST", "hello")] * 3


@pytest.mark.parametrize(
    ("code", "following"),
    [(21211, "sent"), (21610, "failed")],
    ids=["21211 invalid To", "21610 unsubscribed recipient: later replies not sent either"],
)
async def test_a_permanent_refusal_fails_the_reply_once_and_frees_the_conversation(
    rig: Rig, code: int, following: str, caplog: pytest.LogCaptureFixture
) -> None:
    rig.twilio.plan("refused", Reject(400, code))
    refused, later = await rig.enqueue("refused", "later")

    await rig.drain()
    rig.clock.advance(3600)
    await rig.drain()

    record = await rig.record(refused)
    assert (record.state, record.error_code, record.attempts) == ("failed", code, 1)
    assert rig.twilio.posts("refused") == [Seen("POST", "refused")]
    assert f"outbox {refused}" in caplog.text and "failed" in caplog.text
    # The refused reply no longer holds back the conversation's next one.
    assert (await rig.record(later)).state == following
    assert len(rig.twilio.posts("later")) == (1 if following == "sent" else 0)


async def test_out_of_attempts_the_reply_is_dead_lettered_listed_and_logged(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=60.0))
    rig.twilio.plan("doomed", *[Reject(500, 20500)] * 3)
    [outbox_id] = await rig.enqueue("doomed")

    await rig.drain()

    record = await rig.record(outbox_id)
    assert (record.state, record.attempts) == ("dead", 3)
    assert [r.id for r in await rig.store.list_outbound(state="dead")] == [outbox_id]
    assert len(rig.twilio.posts()) == 3
    [logged] = [r for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert logged.levelno == logging.ERROR and f"outbox {outbox_id}" in logged.getMessage()
    basic = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert AUTH_TOKEN not in caplog.text and basic not in caplog.text


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Lost(httpx.ReadTimeout, created=True), ["POST", "GET"]),
        (Lost(httpx.RemoteProtocolError, created=True), ["POST", "GET"]),
        (Lost(httpx.ReadTimeout, created=False), ["POST", "GET", "POST"]),
        (Lost(httpx.RemoteProtocolError, created=False), ["POST", "GET", "POST"]),
        # Never reached Twilio (no connection): resent without looking first.
        (Lost(httpx.ConnectError, created=False), ["POST", "POST"]),
    ],
    ids=[
        "read timeout, created: adopted",
        "dropped connection, created: adopted",
        "read timeout, not created: resent",
        "dropped connection, not created: resent",
        "connect error: resent without a look",
    ],
)
async def test_an_unanswered_send_is_looked_up_before_it_is_sent_again(
    rig: Rig, outcome: Lost, expected: list[str]
) -> None:
    rig.twilio.plan("hello", outcome)
    [outbox_id] = await rig.enqueue("hello")

    await rig.drain()

    [message] = rig.twilio.messages  # exactly one text reached the phone
    assert [seen.method for seen in rig.twilio.requests] == expected
    record = await rig.record(outbox_id)
    assert (record.state, record.message_sid) == ("sent", message["sid"])


@pytest.mark.parametrize("before", [timedelta(minutes=1), timedelta(hours=1)], ids=str)
async def test_the_same_text_sent_before_the_attempt_is_not_mistaken_for_it(
    rig: Rig, before: timedelta
) -> None:
    earlier = rig.twilio.add(ALICE, "hello", created=rig.clock() - before)
    rig.twilio.plan("hello", Lost(httpx.ReadTimeout, created=False))
    [outbox_id] = await rig.enqueue("hello")

    await rig.drain()

    assert [seen.method for seen in rig.twilio.requests] == ["POST", "GET", "POST"]
    newest = rig.twilio.messages[-1]
    assert newest is not earlier and newest["body"] == "hello"
    assert (await rig.record(outbox_id)).message_sid == newest["sid"]


@pytest.mark.parametrize(
    ("reached_twilio", "after_restart"),
    [(True, ["GET"]), (False, ["GET", "POST"])],
    ids=["the request had reached Twilio", "the request never left"],
)
async def test_after_a_crash_mid_send_the_new_process_reconciles_before_resending(
    rig: Rig, reached_twilio: bool, after_restart: list[str]
) -> None:
    [outbox_id] = await rig.enqueue("hello")
    [job] = await rig.claim_due()
    await rig.store.mark_attempt_started(job.id, rig.clock())
    if reached_twilio:
        rig.twilio.add(ALICE, "hello")
    # The process dies here, before Twilio's answer: nothing else is recorded.

    await rig.restart()
    rig.clock.advance(1)
    [job] = await rig.claim_due()
    assert job.in_doubt_since is not None
    await rig.sender.deliver(job)

    assert [seen.method for seen in rig.twilio.requests] == after_restart
    [message] = rig.twilio.messages
    record = await rig.record(outbox_id)
    assert (record.state, record.message_sid) == ("sent", message["sid"])


async def test_a_retried_reply_still_goes_out_before_the_next_one_of_its_conversation(
    rig: Rig,
) -> None:
    rig.twilio.plan("first", Reject(500, 20500))
    await rig.enqueue("first", "second", "third", to=ALICE)
    await rig.enqueue("other", to=BOB)

    await rig.drain()

    assert rig.twilio.bodies_to(ALICE) == ["first", "second", "third"]
    assert rig.twilio.bodies_to(BOB) == ["other"]
    alice_posts = [s.body for s in rig.twilio.posts() if s.body != "other"]
    assert alice_posts == ["first", "first", "second", "third"]


async def test_the_running_sender_delivers_every_reply_once_in_order(
    tmp_path: Path,
) -> None:
    """The same guarantees through the real claim loop, real clock and real limiter."""
    twilio = FakeTwilio(lambda: datetime.now(UTC))
    people = [f"+1555999{i:04d}" for i in range(4)]
    for person in people:
        twilio.plan(f"{person} 0", Reject(500, 20500))
        twilio.plan(f"{person} 1", Lost(httpx.RemoteProtocolError, created=True))
        twilio.plan(f"{person} 2", Lost(httpx.ReadTimeout, created=False))
    store = SQLiteStore(tmp_path / "outbox.sqlite3")
    await store.open()
    async with httpx.AsyncClient(transport=httpx.MockTransport(twilio)) as http:
        sender = Sender(
            store,
            TwilioClient(Credentials(ACCOUNT_SID, ACCOUNT_SID, AUTH_TOKEN), BASE_URL, http=http),
            AccountLimiter(max_concurrency=10, rate=Rate(1000, 1.0)),
            RetryPolicy(base_delay=0.01, max_delay=0.05),
            status_callback_url=None,
            concurrency=4,
            opt_outs=OptOuts(store),
            poll_interval=0.01,
        )
        sender.start()
        try:
            for person in people:
                conversation = str(ConversationKey(ours=OURS, person=person))
                await store.enqueue_outbound(
                    [
                        ReplyDraft(
                            conversation,
                            OutboundMessage(to=person, body=f"{person} {n}", from_=OURS).to_json(),
                        )
                        for n in range(4)
                    ]
                )
            sender.wake()

            async def drained() -> bool:
                return (await store.outbox_stats()).depth == 0

            await wait_for(drained, timeout=15)
        finally:
            await sender.stop(timeout=5)
            await store.close()

    for person in people:
        assert twilio.bodies_to(person) == [f"{person} {n}" for n in range(4)]


async def test_an_earlier_identical_reply_is_not_adopted_by_the_next_one(rig: Rig) -> None:
    rig.twilio.plan("same", Accept(), Lost(httpx.ReadTimeout, created=False))
    first, second = await rig.enqueue("same", "same")

    await rig.drain()

    assert len(rig.twilio.messages) == 2
    records = [await rig.record(outbox_id) for outbox_id in (first, second)]
    assert [r.state for r in records] == ["sent", "sent"]
    assert records[0].message_sid != records[1].message_sid


# --- send options ----------------------------------------------------------------------

CODE_OPTIONS = SendOptions(
    validity_period=600, smart_encoded=True, send_as_mms=False, max_price="0.05"
)


def _options_of(form: dict[str, str]) -> dict[str, str]:
    names = ("ValidityPeriod", "SmartEncoded", "SendAsMms", "MaxPrice", "ApplicationSid")
    return {name: form[name] for name in names if name in form}


async def test_a_retried_reply_is_sent_again_with_its_options_and_what_is_left_of_its_validity(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.twilio.plan("code 1", Reject(500, 20500))
    [outbox_id] = await rig.enqueue("code 1", options=CODE_OPTIONS)

    await rig.deliver_due()
    rig.clock.advance(100)
    await rig.deliver_due()

    first, second = rig.twilio.forms
    assert _options_of(first) == {
        "ValidityPeriod": "600",
        "SmartEncoded": "true",
        "SendAsMms": "false",
        "MaxPrice": "0.05",
    }
    # 100 s (and a little real time) spent in our outbox count against the validity.
    assert 495 <= int(second["ValidityPeriod"]) <= 500
    assert {k: v for k, v in _options_of(second).items() if k != "ValidityPeriod"} == {
        "SmartEncoded": "true",
        "SendAsMms": "false",
        "MaxPrice": "0.05",
    }
    assert (await rig.record(outbox_id)).state == "sent"
    assert "MaxPrice, which Twilio ignores since 2024-06-03" in caplog.text


async def test_after_a_crash_the_new_process_sends_the_reply_with_its_options(rig: Rig) -> None:
    rig.twilio.plan("code 2", Lost(httpx.ReadTimeout, created=False))
    [outbox_id] = await rig.enqueue("code 2", options=CODE_OPTIONS)
    await rig.deliver_due()
    assert (await rig.record(outbox_id)).state == "pending"

    await rig.restart()
    await rig.drain()

    assert len(rig.twilio.bodies_to(ALICE)) == 1
    assert rig.twilio.forms[-1]["SmartEncoded"] == "true"
    assert rig.twilio.forms[-1]["MaxPrice"] == "0.05"
    assert 1 <= int(rig.twilio.forms[-1]["ValidityPeriod"]) <= 600


async def test_a_reply_whose_validity_passed_is_dead_lettered_not_sent_late(rig: Rig) -> None:
    rig.twilio.plan("too late", Reject(503, 20503))
    [outbox_id] = await rig.enqueue("too late", options=SendOptions(validity_period=30))

    await rig.deliver_due()  # refused: retried later
    rig.clock.advance(60)
    await rig.drain()

    record = await rig.record(outbox_id)
    assert record.state == "dead"
    assert record.error_message is not None
    assert "validity period of 30 s passed before it could be sent" in record.error_message
    assert len(rig.twilio.posts("too late")) == 1  # the refused attempt only
    [(conversation, message, reason)] = rig.unsent
    assert (conversation, message.body) == (record.conversation, "too late")
    assert reason == record.error_message


async def test_with_a_twiml_app_sends_carry_application_sid_instead_of_a_status_callback(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(RetryPolicy())
    rig.application_sid = "AP" + "d" * 32
    await rig.restart()
    await rig.enqueue("hello")

    await rig.drain()

    [form] = rig.twilio.forms
    assert form["ApplicationSid"] == rig.application_sid
    assert "StatusCallback" not in form
