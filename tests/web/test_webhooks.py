"""POST /api/sms and /api/sms/status as Twilio (and everyone else) calls them.

Table-driven, like courier's handler tests: the raw form, how it is signed, the status
expected, and whether it must reach the bot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from adapter.runtime.settings import Settings
from adapter.store.base import ReplyDraft
from adapter.web.app import create_app
from tests import recording_bot, status_bot

TOKEN = "webhook-test-token"
SECONDARY = "webhook-second-token"
PUBLIC = "https://bot.example.com"
ACCOUNT = "AC" + "1" * 32
SUBACCOUNT = "AC" + "5" * 32
FORM = "application/x-www-form-urlencoded"


def _form(sid_char: str = "a", **extra: str) -> dict[str, str]:
    form = {
        "MessageSid": "SM" + sid_char * 32,
        "AccountSid": ACCOUNT,
        "From": "+15551234567",
        "To": "+15005550006",
        "Body": "hello",
        "NumMedia": "0",
    }
    form.update(extra)
    return form


def _signature(form: dict[str, str], token: str = TOKEN, url: str = f"{PUBLIC}/api/sms") -> str:
    return str(RequestValidator(token).compute_signature(url, form))


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "account_sid": ACCOUNT,
        "auth_token": TOKEN,
        "auth_token_secondary": SECONDARY,
        "public_url": PUBLIC,
        "database": str(tmp_path / "db.sqlite3"),
        "bots": "tests.recording_bot:router",
        # Replies go nowhere reachable; these tests are about what comes in.
        "twilio_base_url": "http://127.0.0.1:9",
        "subaccounts": SUBACCOUNT,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    recording_bot.seen.clear()
    with TestClient(create_app(_settings(tmp_path))) as test_client:
        yield test_client


def _wait_for_bot(count: int, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(recording_bot.seen) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(recording_bot.seen)


SIGNED = "signed"
UNSIGNED = "unsigned"
WRONG = "wrong"
OTHER_URL = "other-url"

CASES = [
    # id, form, signing, content type, status, reaches bot
    ("plain-sms", _form("a"), SIGNED, "application/x-www-form-urlencoded", 200, True),
    ("secondary-token", _form("b"), "secondary", "application/x-www-form-urlencoded", 200, True),
    (
        "charset-param",
        _form("c"),
        SIGNED,
        "application/x-www-form-urlencoded; charset=utf-8",
        200,
        True,
    ),
    ("unsigned", _form("d"), UNSIGNED, "application/x-www-form-urlencoded", 403, False),
    ("wrong-token", _form("e"), WRONG, "application/x-www-form-urlencoded", 403, False),
    (
        "signed-for-another-url",
        _form("f"),
        OTHER_URL,
        "application/x-www-form-urlencoded",
        403,
        False,
    ),
    ("json-body", _form("0"), SIGNED, "application/json", 415, False),
    (
        "no-message-sid",
        {k: v for k, v in _form("1").items() if k != "MessageSid"},
        SIGNED,
        "application/x-www-form-urlencoded",
        400,
        False,
    ),
    (
        "mms-ten-media-twilios-maximum",
        _form(
            "9",
            NumMedia="10",
            **{f"MediaUrl{i}": f"https://api.twilio.com/Media/ME{i}" for i in range(10)},
        ),
        SIGNED,
        "application/x-www-form-urlencoded",
        200,
        True,
    ),
    (
        "mms-eleven-media",
        _form(
            "8",
            NumMedia="11",
            **{f"MediaUrl{i}": f"https://api.twilio.com/Media/ME{i}" for i in range(11)},
        ),
        SIGNED,
        "application/x-www-form-urlencoded",
        400,
        False,
    ),
    (
        "bad-num-media",
        _form("2", NumMedia="lots"),
        SIGNED,
        "application/x-www-form-urlencoded",
        400,
        False,
    ),
    ("superscript-num-media", _form("8", NumMedia="²"), SIGNED, FORM, 400, False),
    ("another-account", _form("9", AccountSid="AC" + "2" * 32), SIGNED, FORM, 403, False),
    ("subaccount", _form("c", AccountSid=SUBACCOUNT), SIGNED, FORM, 200, True),
    ("sid-disagrees", _form("d", SmsSid="SM" + "e" * 32), SIGNED, FORM, 400, False),
    ("malformed-escape", _form("e", Body="100%"), "raw-percent", FORM, 400, False),
]


@pytest.mark.parametrize(
    ("form", "signing", "content_type", "status", "reaches_bot"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_webhook_table(
    client: TestClient,
    form: dict[str, str],
    signing: str,
    content_type: str,
    status: int,
    reaches_bot: bool,
) -> None:
    headers = {"Content-Type": content_type}
    if signing == SIGNED:
        headers["X-Twilio-Signature"] = _signature(form)
    elif signing == "secondary":
        headers["X-Twilio-Signature"] = _signature(form, SECONDARY)
    elif signing == WRONG:
        headers["X-Twilio-Signature"] = _signature(form, "not-the-token")
    elif signing == OTHER_URL:
        headers["X-Twilio-Signature"] = _signature(form, url="https://evil.example.com/api/sms")

    content = urlencode(form)
    if signing == "raw-percent":
        # Signed as Twilio would sign the decoded value, but sent with a bare "%".
        content = content.replace("%25", "%")
        headers["X-Twilio-Signature"] = _signature(form)
    response = client.post("/api/sms", content=content, headers=headers)

    assert response.status_code == status, response.text
    if status == 200:
        assert response.headers["content-type"].startswith("text/xml")
        assert response.text.endswith("<Response />")
        assert _wait_for_bot(1) == [form["MessageSid"]]
    else:
        assert "Traceback" not in response.text
        time.sleep(0.05)
        assert recording_bot.seen == []


def test_oversized_body_is_refused_unread(client: TestClient) -> None:
    form = _form("3", Body="x" * (70 * 1024))
    response = client.post(
        "/api/sms",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _signature(form),
        },
    )
    assert response.status_code == 413
    assert recording_bot.seen == []


def test_query_string_is_part_of_the_signed_url(client: TestClient) -> None:
    form = _form("4")
    url = f"{PUBLIC}/api/sms?bot=sales&x=%2B1"
    response = client.post(
        "/api/sms?bot=sales&x=%2B1",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _signature(form, url=url),
        },
    )
    assert response.status_code == 200
    assert _wait_for_bot(1) == [form["MessageSid"]]


def test_repeated_delivery_is_acknowledged_and_handled_once(client: TestClient) -> None:
    form = _form("5")
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": _signature(form),
    }
    for _ in range(3):
        assert client.post("/api/sms", content=urlencode(form), headers=headers).status_code == 200
    assert _wait_for_bot(1) == [form["MessageSid"]]
    time.sleep(0.1)
    assert recording_bot.seen == [form["MessageSid"]]


def test_a_captured_webhook_cannot_be_replayed_as_a_new_text(client: TestClient) -> None:
    # Twilio's signed string is name+value with no separators, so folding NumMedia=0
    # into the MessageSid's value keeps the signature valid: it must still be refused.
    form = _form("f")
    headers = {"Content-Type": FORM, "X-Twilio-Signature": _signature(form)}
    assert client.post("/api/sms", content=urlencode(form), headers=headers).status_code == 200
    folded = {k: v for k, v in form.items() if k != "NumMedia"}
    folded["MessageSid"] += "NumMedia0"
    assert _signature(folded) == _signature(form)

    replay = client.post("/api/sms", content=urlencode(folded), headers=headers)

    assert replay.status_code == 400
    assert _wait_for_bot(1) == [form["MessageSid"]]
    time.sleep(0.1)
    assert recording_bot.seen == [form["MessageSid"]]


def test_a_replayed_status_callback_does_not_run_status_handlers_again(
    tmp_path: Path,
) -> None:
    status_bot.statuses.clear()
    sid = "SM" + "9" * 32
    app = create_app(_settings(tmp_path, bots="tests.status_bot:router"))
    with TestClient(app) as client:
        store = app.state.channel.store

        async def a_sent_reply() -> None:
            [row] = await store.enqueue_outbound(
                [ReplyDraft("c", {"to": "+15551234567", "from_": "+15005550006", "body": "hi"})]
            )
            await store.claim_outbound(1, 60, datetime.now(UTC))
            await store.mark_attempt_started(row, datetime.now(UTC))
            await store.mark_sent(row, sid, "queued")

        client.portal.call(a_sent_reply)

        def callback(status: str) -> int:
            form = {"MessageSid": sid, "AccountSid": ACCOUNT, "MessageStatus": status}
            headers = {
                "Content-Type": FORM,
                "X-Twilio-Signature": _signature(form, url=f"{PUBLIC}/api/sms/status"),
            }
            return client.post(
                "/api/sms/status", content=urlencode(form), headers=headers
            ).status_code

        assert [callback(s) for s in ("sent", "sent", "delivered", "delivered", "sent")] == [
            200
        ] * 5

    assert status_bot.statuses == [("hi", "sent"), ("hi", "delivered")]


def test_validation_off_accepts_unsigned_but_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recording_bot.seen.clear()
    with caplog.at_level("WARNING"):
        app = create_app(_settings(tmp_path, validate_signatures=False))
    assert "SMS_ADAPTER_VALIDATE_SIGNATURES is off" in caplog.text
    with TestClient(app) as client:
        form = _form("6")
        response = client.post(
            "/api/sms",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200
        assert _wait_for_bot(1) == [form["MessageSid"]]


def test_rejections_are_logged_with_the_reason_and_no_secret(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    form = _form("7")
    with caplog.at_level("INFO"):
        client.post(
            "/api/sms",
            content=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": _signature(form, "not-the-token"),
            },
        )
    assert "signature does not match" in caplog.text
    for secret in (TOKEN, SECONDARY, _signature(form)):
        assert secret not in caplog.text


def test_status_callback_needs_a_signature(client: TestClient) -> None:
    form = {"MessageSid": "SM" + "8" * 32, "AccountSid": ACCOUNT, "MessageStatus": "delivered"}
    unsigned = client.post(
        "/api/sms/status",
        content=urlencode(form),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert unsigned.status_code == 403
    signed = client.post(
        "/api/sms/status",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _signature(form, url=f"{PUBLIC}/api/sms/status"),
        },
    )
    assert signed.status_code == 200  # a SID we never sent is acknowledged and ignored


# --- property: whatever arrives, never a 5xx and never a bot call without a signature ---

_names = st.sampled_from(
    ["MessageSid", "AccountSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "NumSegments"]
) | st.text(max_size=12)
_forms = st.lists(st.tuples(_names, st.text(max_size=40)), max_size=12)
_bodies = st.one_of(
    _forms.map(lambda pairs: urlencode(pairs).encode()),
    st.binary(max_size=300),
)
_content_types = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=latin-1",
        "application/json",
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
    ]
)
_signatures = st.one_of(
    st.none(), st.text(max_size=40), st.binary(max_size=30).map(lambda b: b.hex())
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=_bodies,
    content_type=_content_types,
    signature=_signatures,
    extra_header=st.text(max_size=20),
)
def test_random_requests_never_5xx_and_never_reach_a_bot(
    client: TestClient, body: bytes, content_type: str, signature: str | None, extra_header: str
) -> None:
    headers = {"Content-Type": content_type}
    if signature is not None and signature.isprintable() and signature.isascii():
        headers["X-Twilio-Signature"] = signature
    if extra_header.isascii() and extra_header.isprintable():
        headers["X-Twilio-Webhooks-Signature-Settings"] = extra_header
    response = client.post("/api/sms", content=body, headers=headers)
    assert response.status_code < 500
    assert response.status_code != 200
    assert recording_bot.seen == []


def _post_signed(client: TestClient, path: str, form: dict[str, str]) -> tuple[int, str]:
    response = client.post(
        path,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": _signature(form, url=f"{PUBLIC}{path}"),
        },
    )
    return response.status_code, response.text


@pytest.mark.parametrize("prefix", ["SM", "MM"])
def test_status_callbacks_for_sms_and_mms_sids_are_accepted(
    client: TestClient, prefix: str
) -> None:
    form = {"MessageSid": prefix + "9" * 32, "AccountSid": ACCOUNT, "MessageStatus": "delivered"}
    assert _post_signed(client, "/api/sms/status", form)[0] == 200


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"MessageSid": "SM" + "9" * 32}, "missing MessageStatus"),
        ({"MessageSid": "XX" + "9" * 32, "MessageStatus": "sent"}, "MessageSid is not"),
    ],
    ids=["no-status", "not-a-sid"],
)
def test_a_status_callback_twilio_would_never_send_is_a_400_that_says_why(
    client: TestClient, form: dict[str, str], reason: str
) -> None:
    status, text = _post_signed(client, "/api/sms/status", form)
    assert status == 400
    assert text.startswith("not a Twilio status callback:") and reason in text


def test_a_body_with_an_escape_that_is_not_utf8_is_a_400_not_a_crash(client: TestClient) -> None:
    body = urlencode(_form("b")).replace("Body=hello", "Body=%FF")
    response = client.post(
        "/api/sms",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
    )
    assert response.status_code == 400
    assert "body is not UTF-8" in response.text
    time.sleep(0.05)
    assert recording_bot.seen == []


def test_a_flood_of_forged_webhooks_is_logged_a_few_lines_at_a_time(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Content-Type": FORM, "X-Twilio-Signature": "forged-signature-abcdefghijk"}
    with caplog.at_level("WARNING", logger="adapter.webhook"):
        for digit in "0123456789abcdef" * 3:
            form = _form(digit)
            assert (
                client.post("/api/sms", content=urlencode(form), headers=headers).status_code == 403
            )
    rejections = [r for r in caplog.records if "rejected /api/sms" in r.getMessage()]
    assert 1 <= len(rejections) <= 10  # 48 forged requests within one 10 s window
    metrics = client.get("/metrics").text
    assert 'sms_adapter_signature_rejections_total{path="/api/sms"} 48.0' in metrics
