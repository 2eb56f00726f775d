"""Whatever arrives, at any endpoint, signed or not: never a 5xx.

Signed requests are the dangerous ones (they pass the signature and reach the parsers,
the store and the bots), so the webhook forms here are signed with the real token, with
values drawn to hit what broke before: non-ASCII digits, numbers too large for a
column, identities of the wrong shape, JSON nested past the recursion limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from adapter.botframework.connector_path import connector_secret
from adapter.runtime.channel import build_channel
from adapter.runtime.settings import Settings
from adapter.store.base import ReplyDraft
from adapter.web.app import create_app

TOKEN = "fuzz-auth-token-0123"
ADMIN = "fuzz-admin-token-4567"
PUBLIC = "https://bot.example.com"
ACCOUNT = "AC" + "1" * 32
BOT_ENDPOINT = "http://127.0.0.1:9/api/messages"
CONNECTOR_KEY = "fuzz-connector-key"
SECRET = connector_secret(CONNECTOR_KEY, BOT_ENDPOINT)
FORM = "application/x-www-form-urlencoded"


def _twilio(request: httpx.Request) -> httpx.Response:
    """Twilio, as far as these requests get: every list is empty, every send accepted."""
    if request.method == "GET":
        return httpx.Response(200, json={"messages": [], "next_page_uri": None})
    return httpx.Response(201, json={"sid": "SM" + "f" * 32, "status": "queued"})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    configured = Settings(
        account_sid=ACCOUNT,
        auth_token=TOKEN,
        public_url=PUBLIC,
        admin_token=ADMIN,
        database=str(tmp / "fuzz.sqlite3"),
        bots=f"+15005550006=tests.recording_bot:router,*=botframework+{BOT_ENDPOINT}",
        botframework_secret=CONNECTOR_KEY,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(_twilio))
    channel = build_channel(configured, http=http)
    with TestClient(create_app(configured, channel=channel)) as test_client:

        async def a_sent_reply() -> None:
            [row] = await channel.store.enqueue_outbound(
                [ReplyDraft("c", {"to": "+15551234567", "from_": "+15005550006", "body": "hi"})]
            )
            await channel.store.claim_outbound(1, 60, datetime.now(UTC))
            await channel.store.mark_attempt_started(row, datetime.now(UTC))
            await channel.store.mark_sent(row, SENT, "queued")

        test_client.portal.call(a_sent_reply)
        yield test_client


# Values that broke parsers before, and ordinary ones.
_nasty = st.sampled_from(
    ["²", "١٢", "３", "9" * 30, "-1", "1e3", " 7", "0x10", "%", "%zz", "\x00", "NaN", ""]
)
_sid = st.sampled_from(["SM", "MM", "IM", "XX", "sm"]).flatmap(
    lambda p: st.text("0123456789abcdefABCDEF", min_size=30, max_size=34).map(lambda h: p + h)
)
_value = st.one_of(_nasty, _sid, st.text(max_size=30), st.integers().map(str))
SENT = "SM" + "e" * 32  # a reply we sent: status callbacks for it reach the store
_fields = [
    "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "To", "Body", "NumMedia",
    "NumSegments", "MediaUrl0", "MediaContentType0", "MessageStatus", "SmsStatus",
    "ErrorCode", "MessagingServiceSid", "OptOutType",
]  # fmt: skip
_good = {
    "MessageSid": SENT, "AccountSid": ACCOUNT, "To": "+15005550006", "Body": "hi",
    "NumMedia": "0", "MessageStatus": "delivered", "ErrorCode": "30003",
}  # fmt: skip
# Twilio's fields: each usually its good value, sometimes something else, so most forms get
# past the first checks and reach the later ones (the store, a bot); the rest optional.
_forms = st.fixed_dictionaries(
    {
        "From": st.just("+15551234567"),
        **{name: st.one_of(st.just(good), st.just(good), _value) for name, good in _good.items()},
    },
    optional={name: _value for name in _fields if name not in _good},
).map(lambda form: list(form.items()))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(["/api/sms", "/api/sms/status"]), form=_forms)
def test_signed_webhooks_never_5xx(
    client: TestClient, path: str, form: list[tuple[str, str]]
) -> None:
    body = urlencode(form)
    # The reference signs a dict: a repeated name signs its last value, which Starlette's
    # form would also keep. Sign what we send, as Twilio would.
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, dict(form))
    response = client.post(
        path, content=body, headers={"Content-Type": FORM, "X-Twilio-Signature": signature}
    )
    assert response.status_code < 500, response.text


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | _nasty,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_bodies = st.one_of(
    _json.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"to": _value, "body": _value, "from": _value, "media": st.lists(_value, max_size=3)}
    ).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["message", "typing", "x"]),
            "text": _value,
            "bot": st.fixed_dictionaries({"id": _value}),
            "members": st.lists(st.fixed_dictionaries({"id": _value}), max_size=2),
            "attachments": st.lists(_json, max_size=2),
        }
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1_000, 100_000).map(lambda n: b"[" * n),
    st.binary(max_size=200),
)
_ids = st.one_of(_value, _sid, st.sampled_from(["%2B15551234567", "+15551234567", "1"]))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    route=st.sampled_from(
        [
            ("POST", "/api/messages"),
            ("GET", "/api/messages/{id}"),
            ("GET", "/api/messages/dead"),
            ("GET", "/api/conversations/{id}/messages?limit={v}&with={v2}"),
            ("GET", "/api/conversations/{id}/messages?before={v}"),
            ("POST", "/botframework/{secret}/v3/conversations"),
            ("POST", "/botframework/{secret}/v3/conversations/{id}/activities"),
            ("POST", "/botframework/{secret}/v3/conversations/{id}/activities/{v}"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
        ]
    ),
    body=_bodies,
    ident=_ids,
    value=_value,
    value2=_value,
)
def test_any_request_to_any_endpoint_never_5xx(
    client: TestClient,
    route: tuple[str, str],
    body: bytes,
    ident: str,
    value: str,
    value2: str,
) -> None:
    method, template = route
    path = template.format(
        id=quote(ident, safe="%+"), v=quote(value), v2=quote(value2), secret=SECRET
    )
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}
    response = client.request(
        method, path, content=body if method == "POST" else None, headers=headers
    )
    assert response.status_code < 500, (path, response.text)
