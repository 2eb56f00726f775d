"""Rebuilding the URL Twilio requested, directly and through proxies."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from adapter.networks import Network, parse_trusted_proxies
from adapter.twilio.signature import SignatureValidator
from adapter.web.request_url import external_url

LOOPBACK = parse_trusted_proxies("127.0.0.1,::1")
PATH = "/twilio/sms"
FORGED = {"x-forwarded-proto": "https", "x-forwarded-host": "evil.example", "x-forwarded-port": "1"}


def make_request(
    headers: dict[str, str] | None = None,
    *,
    scheme: str = "http",
    peer: str | None = "127.0.0.1",
    raw_path: bytes | None = PATH.encode(),
    path: str = PATH,
    query: bytes = b"",
    root_path: str = "",
    server: tuple[str, int] | None = ("127.0.0.1", 8000),
) -> Request:
    """A Request as uvicorn would build it for a peer talking to us directly or via a proxy."""
    all_headers = {"host": "127.0.0.1:8000", **(headers or {})}
    scope: dict[str, Any] = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": root_path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items() if v],
        "client": (peer, 51234) if peer else None,
        "server": server,
    }
    return Request(scope)


def behind_root_path() -> Request:
    """What `uvicorn --root-path /prefix` passes on: the root path prepended to both paths."""
    return make_request(
        root_path="/prefix", raw_path=b"/prefix/twilio/sms", path="/prefix/twilio/sms"
    )


# Each case: the request, SMS_ADAPTER_PUBLIC_URL, the trusted proxies, the URL Twilio signed.
CASES = [
    pytest.param(make_request(), None, LOOPBACK, "http://127.0.0.1:8000/twilio/sms", id="direct"),
    pytest.param(
        make_request({"host": "bot.example.com:443"}, scheme="https"), None, [],
        "https://bot.example.com/twilio/sms", id="https-default-port-omitted",
    ),
    pytest.param(
        make_request({"host": "bot.example.com:80"}), None, [], "http://bot.example.com/twilio/sms",
        id="http-default-port-omitted",
    ),
    pytest.param(
        make_request({"host": "[::1]:8000"}, peer="::1"), None, [], "http://[::1]:8000/twilio/sms",
        id="ipv6-host",
    ),
    pytest.param(
        make_request({"host": ""}), None, [], "http://127.0.0.1:8000/twilio/sms",
        id="no-host-header-uses-server",
    ),
    pytest.param(
        make_request(query=b"a=%2B&b=c+d&b=%E2%9C%93&empty="), None, [],
        "http://127.0.0.1:8000/twilio/sms?a=%2B&b=c+d&b=%E2%9C%93&empty=", id="query-verbatim",
    ),
    pytest.param(
        make_request(raw_path=b"/twilio/sms%2Fx%20y", path="/twilio/sms/x y"), None, [],
        "http://127.0.0.1:8000/twilio/sms%2Fx%20y", id="raw-path-verbatim",
    ),
    pytest.param(
        make_request(raw_path=None, path="/twilio/sms x"), None, [],
        "http://127.0.0.1:8000/twilio/sms%20x", id="no-raw-path-re-encodes-path",
    ),
    pytest.param(
        behind_root_path(),
        None, [], "http://127.0.0.1:8000/prefix/twilio/sms", id="root-path-is-part-of-the-url",
    ),
    pytest.param(
        make_request({"x-forwarded-proto": "https", "x-forwarded-host": "bot.example.com"}),
        None, LOOPBACK, "https://bot.example.com/twilio/sms", id="trusted-proxy",
    ),
    pytest.param(
        make_request({"x-forwarded-proto": "https", "host": "bot.ngrok.app"}), None, LOOPBACK,
        "https://bot.ngrok.app/twilio/sms", id="trusted-proxy-proto-only",
    ),
    pytest.param(
        make_request(
            {"x-forwarded-proto": "https", "x-forwarded-host": "bot.example.com",
             "x-forwarded-port": "8443"},
            query=b"x=%2B",
        ),
        None, LOOPBACK, "https://bot.example.com:8443/twilio/sms?x=%2B", id="trusted-proxy-port",
    ),
    pytest.param(
        make_request(
            {"x-forwarded-proto": "https", "x-forwarded-host": "bot.example.com:8443",
             "x-forwarded-port": "443"},
        ),
        None, LOOPBACK, "https://bot.example.com/twilio/sms", id="forwarded-port-beats-host-port",
    ),
    pytest.param(
        make_request(
            {"x-forwarded-proto": "https, http", "x-forwarded-host": "bot.example.com, internal",
             "x-forwarded-port": "443, 8000"},
        ),
        None, LOOPBACK, "https://bot.example.com/twilio/sms", id="first-of-several-values",
    ),
    pytest.param(
        make_request({"x-forwarded-proto": "gopher"}), None, LOOPBACK,
        "http://127.0.0.1:8000/twilio/sms", id="unknown-proto-ignored",
    ),
    pytest.param(
        make_request(FORGED, peer="203.0.113.9"), None, LOOPBACK,
        "http://127.0.0.1:8000/twilio/sms", id="untrusted-peer-forged-headers-ignored",
    ),
    pytest.param(
        make_request({"forwarded": "proto=https;host=evil.example"}, peer="203.0.113.9"), None,
        LOOPBACK, "http://127.0.0.1:8000/twilio/sms", id="untrusted-peer-forged-forwarded-ignored",
    ),
    pytest.param(
        make_request(FORGED, peer=None), None, parse_trusted_proxies("*"),
        "http://127.0.0.1:8000/twilio/sms", id="unknown-peer-never-trusted",
    ),
    pytest.param(
        make_request(FORGED, peer="testclient"), None, parse_trusted_proxies("*"),
        "http://127.0.0.1:8000/twilio/sms", id="peer-that-is-not-an-ip-never-trusted",
    ),
    pytest.param(
        make_request({"x-forwarded-proto": "https", "x-forwarded-host": "bot.example.com"},
                     peer="10.20.30.40"),
        None, parse_trusted_proxies("10.0.0.0/8"), "https://bot.example.com/twilio/sms",
        id="peer-in-trusted-network",
    ),
    pytest.param(
        make_request({"x-forwarded-proto": "https", "x-forwarded-host": "bot.example.com"},
                     peer="::ffff:127.0.0.1"),
        None, parse_trusted_proxies("127.0.0.1"), "https://bot.example.com/twilio/sms",
        id="ipv4-mapped-peer",
    ),
    pytest.param(
        make_request({"x-forwarded-proto": "https", "x-forwarded-host": "bot.example.com"},
                     peer="2001:db8::7"),
        None, parse_trusted_proxies("*"), "https://bot.example.com/twilio/sms", id="trust-all",
    ),
    pytest.param(
        make_request(
            {"forwarded": 'for=198.51.100.1;proto=https;host="bot.example.com", '
                          "for=10.0.0.1;proto=http;host=internal"},
        ),
        None, LOOPBACK, "https://bot.example.com/twilio/sms", id="forwarded-header",
    ),
    pytest.param(
        make_request(
            {"forwarded": 'For="[2001:db8::1]:4711"; Host="[2001:db8::2]:8443";Proto=HTTPS'},
        ),
        None, LOOPBACK, "https://[2001:db8::2]:8443/twilio/sms", id="forwarded-quoted-ipv6",
    ),
    pytest.param(
        make_request({"forwarded": "for=198.51.100.1, for=10.0.0.1;proto=https;host=internal"}),
        None, LOOPBACK, "http://127.0.0.1:8000/twilio/sms", id="forwarded-later-elements-ignored",
    ),
    pytest.param(
        make_request({"forwarded": "host=bot.example.com", "x-forwarded-proto": "https",
                      "x-forwarded-host": "other.example"}),
        None, LOOPBACK, "https://bot.example.com/twilio/sms", id="forwarded-beats-x-forwarded",
    ),
    pytest.param(
        make_request(FORGED, query=b"a=%2B"), "https://bot.example.com", LOOPBACK,
        "https://bot.example.com/twilio/sms?a=%2B", id="public-url",
    ),
    pytest.param(
        make_request(), "https://example.com/prefix/", [],
        "https://example.com/prefix/twilio/sms", id="public-url-with-prefix",
    ),
    pytest.param(
        behind_root_path(),
        "https://example.com/prefix", [], "https://example.com/prefix/twilio/sms",
        id="public-url-with-prefix-and-server-root-path",
    ),
    pytest.param(
        make_request({"host": "evil.example"}, peer="203.0.113.9"), "https://bot.example.com", [],
        "https://bot.example.com/twilio/sms", id="public-url-ignores-host",
    ),
    pytest.param(
        make_request(), "", [], "http://127.0.0.1:8000/twilio/sms", id="empty-public-url-unset",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("request_", "public_url", "trusted", "expected"), CASES)
def test_external_url(
    request_: Request, public_url: str | None, trusted: list[Network], expected: str
) -> None:
    assert external_url(request_, public_url, trusted) == expected


def test_mounted_sub_app_still_uses_the_server_root() -> None:
    # Starlette's Mount extends root_path for the sub-app; the public URL maps to the server's.
    request = behind_root_path()
    request.scope.update(app_root_path="/prefix", root_path="/prefix/twilio")
    assert external_url(request, "https://example.com/prefix", []) == (
        "https://example.com/prefix/twilio/sms"
    )


TRUSTED_PROXY_CASES = [
    pytest.param("", [], id="empty"),
    pytest.param("127.0.0.1", ["127.0.0.1/32"], id="one-address"),
    pytest.param(" 127.0.0.1 , 10.0.0.0/8,,::1 ", ["127.0.0.1/32", "10.0.0.0/8", "::1/128"],
                 id="list-with-spaces-and-gaps"),
    pytest.param("10.1.2.3/8", ["10.0.0.0/8"], id="host-bits-forgiven"),
    pytest.param("*", ["0.0.0.0/0", "::/0"], id="trust-all"),
    pytest.param("127.0.0.1,*", ["0.0.0.0/0", "::/0"], id="star-anywhere"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), TRUSTED_PROXY_CASES)
def test_parse_trusted_proxies(value: str, expected: list[str]) -> None:
    assert parse_trusted_proxies(value) == [ipaddress.ip_network(n) for n in expected]


@pytest.mark.parametrize(
    ("value", "bad_entry"),
    [
        pytest.param("localhost", "localhost", id="hostname"),
        pytest.param("127.0.0.1, 10.0.0.0/33", "10.0.0.0/33", id="bad-prefix"),
        pytest.param("*, nope", "nope", id="bad-entry-after-star"),
    ],
)
def test_parse_trusted_proxies_names_the_bad_entry(value: str, bad_entry: str) -> None:
    with pytest.raises(ValueError, match=f"'{bad_entry}'"):
        parse_trusted_proxies(value)


# End to end: a real uvicorn server, a client posting what Twilio would, signed by the
# reference library for the public URL; the app rebuilds that URL and checks the signature.
TOKEN = "0123456789abcdef0123456789abcdef"
PUBLIC = "https://bot.example.com"


def signature_app(public_url: str | None) -> Starlette:
    validator = SignatureValidator([TOKEN])

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
        url = external_url(request, public_url, LOOPBACK)
        check = validator.check(url, pairs, request.headers, body)
        return JSONResponse({"url": url, "valid": check.valid, "reason": check.reason})

    return Starlette(routes=[Route(PATH, webhook, methods=["POST"])])


@asynccontextmanager
async def serving(app: Starlette, root_path: str = "") -> AsyncIterator[str]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        # Listening before uvicorn starts queues the client's connection in the kernel,
        # so there is no start-up to wait for.
        listener.listen()
        port = listener.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", root_path=root_path)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            async with asyncio.timeout(5):
                await task


FORM = [("Body", "café 🚀 a+b"), ("MediaUrl0", "https://m.example/2"), ("MediaUrl0", "x")]
THROUGH_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bot.example.com"}

# Each case: the public URL setting, uvicorn's root path, the path and query the proxy
# forwards, the headers it adds, the URL Twilio requested, and whether it is accepted.
E2E_CASES = [
    pytest.param(None, "", PATH + "?a=%2B&b=c+d", THROUGH_PROXY,
                 PUBLIC + PATH + "?a=%2B&b=c+d", True, id="forwarding-headers"),
    pytest.param(PUBLIC, "", PATH + "?a=%2B", {}, PUBLIC + PATH + "?a=%2B", True,
                 id="public-url"),
    pytest.param(PUBLIC + "/bot", "/bot", PATH, {}, PUBLIC + "/bot" + PATH, True,
                 id="public-url-with-prefix-and-root-path"),
    pytest.param(None, "", PATH + "?a=%2B", {}, PUBLIC + PATH + "?a=%2B", False,
                 id="proxy-headers-missing"),
    pytest.param(PUBLIC, "", PATH + "?a=+", {}, PUBLIC + PATH + "?a=%2B", False,
                 id="query-re-encoded-by-proxy"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("public_url", "root_path", "forwarded_target", "proxy_headers", "twilio_url", "accepted"),
    E2E_CASES,
)
async def test_signature_survives_the_trip_through_a_real_server(
    public_url: str | None,
    root_path: str,
    forwarded_target: str,
    proxy_headers: dict[str, str],
    twilio_url: str,
    accepted: bool,
) -> None:
    # The reference reads repeated names through getlist(), so give it a multi-dict.
    signature = RequestValidator(TOKEN).compute_signature(twilio_url, ImmutableMultiDict(FORM))
    body = urlencode(FORM).encode()
    headers = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
        **proxy_headers,
    }

    async with serving(signature_app(public_url), root_path) as base:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(base + forwarded_target, content=body, headers=headers)

    result = response.json()
    assert result["valid"] is accepted, result
    if accepted:
        assert result["url"] == twilio_url
