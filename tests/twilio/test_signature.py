"""Signature checks, held to the official twilio library's RequestValidator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers, ImmutableMultiDict
from twilio.request_validator import RequestValidator

from adapter.twilio.signature import (
    HMAC_SHA1,
    HMAC_SHA256,
    SignatureCheck,
    SignatureValidator,
    compute_signature,
    split_host_port,
)

Params = list[tuple[str, str]]

PRIMARY = "0123456789abcdef0123456789abcdef"
SECONDARY = "fedcba9876543210fedcba9876543210"
STRANGER = "00000000000000000000000000000000"
SHARED_KEY = "shared-key-never-to-be-logged"
URL = "https://bot.example.com/twilio/sms"
INBOUND: Params = [
    ("MessageSid", "SM0123456789abcdef0123456789abcdef"),
    ("From", "+15005550006"),
    ("To", "+15005550001"),
    ("Body", "hello"),
    ("NumMedia", "0"),
]
SHA256_SETTINGS = {"X-Twilio-Webhooks-Signature-Settings": "key=KS123,algorithm=HMAC_SHA256"}
REFERENCE_NAMES = {HMAC_SHA1: "HMAC_SHA1", HMAC_SHA256: "HMAC_SHA256"}


def reference_signature(key: str, url: str, params: Params, algorithm: str = HMAC_SHA1) -> str:
    # The reference reads repeated names through getlist(), so give it a multi-dict.
    reference = RequestValidator(key)
    signature: str = reference.compute_signature(
        url, ImmutableMultiDict(params), REFERENCE_NAMES[algorithm]
    )
    return signature


def reference_accepts(key: str, url: str, params: Params | str, signature: str) -> bool:
    form: ImmutableMultiDict[str, str] | str = (
        params if isinstance(params, str) else ImmutableMultiDict(params)
    )
    return bool(RequestValidator(key).validate(url, form, signature))


def signed(signature: str, **extra: str) -> dict[str, str]:
    return {"X-Twilio-Signature": signature, **extra}


def test_matches_the_example_in_twilios_documentation() -> None:
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert compute_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


PARAM_CASES = [
    pytest.param([], id="no-params"),
    pytest.param(INBOUND, id="inbound-sms"),
    pytest.param(
        [("MediaUrl", "https://m.example/b"), ("MediaUrl", "https://m.example/a")],
        id="repeated-name-values-out-of-order",
    ),
    pytest.param([("Tag", "x"), ("Tag", "x"), ("Tag", "a")], id="repeated-name-same-value"),
    pytest.param([("b", "1"), ("B", "2"), ("a", "3"), ("_", "4"), ("A", "5")], id="name-case"),
    pytest.param([("Body", "on my way 🚀🙂"), ("From", "+15005550006")], id="emoji"),
    pytest.param([("Body", "Crème brûlée à São Paulo, Ωmega")], id="accented"),
    pytest.param([("Body", ""), ("MediaUrl0", ""), ("", "nameless")], id="empty-values"),
    pytest.param([("Body", "a+b=c&d%2Be")], id="form-metacharacters-in-value"),
]


@pytest.mark.parametrize("algorithm", [HMAC_SHA1, HMAC_SHA256])
@pytest.mark.parametrize("params", PARAM_CASES)
def test_compute_signature_matches_reference(params: Params, algorithm: str) -> None:
    url = URL + "?q=a%2Bb&r=%E2%9C%93"
    assert compute_signature(PRIMARY, url, params, algorithm) == reference_signature(
        PRIMARY, url, params, algorithm
    )


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=150, deadline=None)
@given(params=st.lists(st.tuples(_text, _text), max_size=8), query=_text)
def test_compute_signature_matches_reference_for_any_form(params: Params, query: str) -> None:
    url = f"{URL}?{query}"
    assert compute_signature(PRIMARY, url, params) == reference_signature(PRIMARY, url, params)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="HMAC-MD5"):
        compute_signature(PRIMARY, URL, [], "HMAC-MD5")


# Each case: the URL Twilio signed, the URL we rebuilt, the form Twilio signed, the form we
# received, the token Twilio used, the tokens we hold, and whether we should accept.
SHA1_CASES = [
    pytest.param(URL, URL, INBOUND, INBOUND, PRIMARY, [PRIMARY], True, id="as-signed"),
    pytest.param(
        "https://bot.example.com:443/twilio/sms", URL, INBOUND, INBOUND, PRIMARY, [PRIMARY], True,
        id="signed-with-443-request-without",
    ),
    pytest.param(
        URL, "https://bot.example.com:443/twilio/sms", INBOUND, INBOUND, PRIMARY, [PRIMARY], True,
        id="signed-without-port-request-with-443",
    ),
    pytest.param(
        "http://bot.example.com:80/sms", "http://bot.example.com/sms", INBOUND, INBOUND,
        PRIMARY, [PRIMARY], True, id="http-signed-with-80-request-without",
    ),
    pytest.param(
        "http://bot.example.com/sms", "http://bot.example.com:80/sms", INBOUND, INBOUND,
        PRIMARY, [PRIMARY], True, id="http-signed-without-port-request-with-80",
    ),
    pytest.param(
        "https://bot.example.com:80/sms", "https://bot.example.com/sms", INBOUND, INBOUND,
        PRIMARY, [PRIMARY], False, id="port-80-is-not-the-https-default",
    ),
    # HTTPS on a port of its own (a proxy on :8443): Twilio's libraries accept the URL
    # signed with or without that port, and so do we.
    pytest.param(
        URL, "https://bot.example.com:8443/twilio/sms", INBOUND, INBOUND, PRIMARY, [PRIMARY],
        True, id="https-signed-without-its-own-port",
    ),
    pytest.param(
        "https://bot.example.com:8443/twilio/sms", "https://bot.example.com:8443/twilio/sms",
        INBOUND, INBOUND, PRIMARY, [PRIMARY], True, id="https-signed-with-its-own-port",
    ),
    pytest.param(
        "https://bot.example.com:8443/sms?q=a%2Bb", "https://bot.example.com:8443/sms?q=a%2Bb",
        INBOUND, INBOUND, PRIMARY, [PRIMARY], True, id="https-own-port-query-kept",
    ),
    pytest.param(
        "https://bot.example.com/sms?q=a%2Bb", "https://bot.example.com:8443/sms?q=a%2Bb",
        INBOUND, INBOUND, PRIMARY, [PRIMARY], True, id="https-own-port-dropped-query-kept",
    ),
    pytest.param(
        "https://bot.example.com:9443/twilio/sms", "https://bot.example.com:8443/twilio/sms",
        INBOUND, INBOUND, PRIMARY, [PRIMARY], False, id="https-another-port",
    ),
    pytest.param(
        "http://[::1]:80/sms", "http://[::1]/sms", INBOUND, INBOUND, PRIMARY, [PRIMARY], True,
        id="ipv6-host-default-port",
    ),
    pytest.param(
        "https://user:p%40ss@bot.example.com:443/sms", "https://user:p%40ss@bot.example.com/sms",
        INBOUND, INBOUND, PRIMARY, [PRIMARY], True, id="basic-auth-in-url-with-port",
    ),
    pytest.param(
        URL + "?q=a%2Bb&r=%E2%9C%93&r=", URL + "?q=a%2Bb&r=%E2%9C%93&r=", INBOUND, INBOUND,
        PRIMARY, [PRIMARY], True, id="query-signed-verbatim",
    ),
    pytest.param(
        "https://bot.example.com:443/sms?q=a%2Bb", "https://bot.example.com/sms?q=a%2Bb",
        INBOUND, INBOUND, PRIMARY, [PRIMARY], True, id="query-kept-when-port-dropped",
    ),
    pytest.param(
        URL + "?q=a%2Bb", URL + "?q=a+b", INBOUND, INBOUND, PRIMARY, [PRIMARY], False,
        id="query-re-encoded",
    ),
    pytest.param(
        URL + "?a=1&b=2", URL + "?b=2&a=1", INBOUND, INBOUND, PRIMARY, [PRIMARY], False,
        id="query-reordered",
    ),
    pytest.param(
        "https://bot.example.com:443/sms?next=https://x.example/y",
        "https://bot.example.com/sms?next=https://x.example/y", INBOUND, INBOUND, PRIMARY,
        [PRIMARY], True, id="scheme-inside-the-query",
    ),
    pytest.param(
        "https://bot.example.com:443", "https://bot.example.com", INBOUND, INBOUND, PRIMARY,
        [PRIMARY], True, id="no-path",
    ),
    pytest.param(
        "https://BOX.EXAMPLE.COM:443/sms", "https://BOX.EXAMPLE.COM/sms", INBOUND, INBOUND,
        PRIMARY, [PRIMARY], True, id="upper-case-host",
    ),
    pytest.param(
        URL, URL + "/", INBOUND, INBOUND, PRIMARY, [PRIMARY], False, id="trailing-slash",
    ),
    pytest.param(
        URL, "http://bot.example.com/twilio/sms", INBOUND, INBOUND, PRIMARY, [PRIMARY], False,
        id="scheme-differs",
    ),
    pytest.param(
        URL, URL,
        [("MediaUrl0", "https://m.example/b"), ("MediaUrl0", "https://m.example/a")],
        [("MediaUrl0", "https://m.example/a"), ("MediaUrl0", "https://m.example/b")],
        PRIMARY, [PRIMARY], True, id="repeated-name-received-in-other-order",
    ),
    pytest.param(
        URL, URL, [("Body", "👋 olá, ça va?")], [("Body", "👋 olá, ça va?")], PRIMARY,
        [PRIMARY], True, id="unicode-body",
    ),
    pytest.param(
        URL, URL, [("Body", ""), ("ProfileName", "")], [("Body", ""), ("ProfileName", "")],
        PRIMARY, [PRIMARY], True, id="empty-values",
    ),
    pytest.param(
        URL, URL, INBOUND, [*INBOUND[:3], ("Body", "HELLO"), *INBOUND[4:]], PRIMARY, [PRIMARY],
        False, id="value-tampered",
    ),
    pytest.param(
        URL, URL, INBOUND, [*INBOUND, ("Extra", "1")], PRIMARY, [PRIMARY], False,
        id="param-added",
    ),
    pytest.param(
        URL, URL, INBOUND, INBOUND[1:], PRIMARY, [PRIMARY], False, id="param-removed",
    ),
    pytest.param(
        URL, URL, INBOUND, INBOUND, SECONDARY, [PRIMARY, SECONDARY], True,
        id="secondary-token-accepted",
    ),
    pytest.param(
        URL, URL, INBOUND, INBOUND, PRIMARY, ["", " ", PRIMARY], True, id="empty-tokens-ignored",
    ),
    pytest.param(
        URL, URL, INBOUND, INBOUND, STRANGER, [PRIMARY, SECONDARY], False,
        id="unknown-token-rejected",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("signed_url", "request_url", "signed_params", "received_params", "signing_token", "tokens",
     "accepted"),
    SHA1_CASES,
)  # fmt: skip
def test_sha1_signatures(
    signed_url: str,
    request_url: str,
    signed_params: Params,
    received_params: Params,
    signing_token: str,
    tokens: list[str],
    accepted: bool,
) -> None:
    signature = reference_signature(signing_token, signed_url, signed_params)

    check = SignatureValidator(tokens).check(request_url, received_params, signed(signature))

    assert check == SignatureCheck(
        valid=accepted,
        reason="ok" if accepted else "signature does not match",
        algorithm=HMAC_SHA1,
    )
    reference_verdict = any(
        reference_accepts(token, request_url, received_params, signature)
        for token in tokens
        if token
    )
    assert reference_verdict == accepted


def test_plain_http_on_its_own_port_must_match_exactly_unlike_the_reference() -> None:
    # The reference drops any port. A plain-http webhook on a port of its own is a local
    # setup (a tunnel, a test) that Twilio signs as requested: the port is kept.
    signature = reference_signature(PRIMARY, "http://bot.example.com/twilio/sms", INBOUND)
    request_url = "http://bot.example.com:8000/twilio/sms"
    assert reference_accepts(PRIMARY, request_url, INBOUND, signature)

    check = SignatureValidator([PRIMARY]).check(request_url, INBOUND, signed(signature))

    assert not check.valid
    own_port = reference_signature(PRIMARY, request_url, INBOUND)
    assert SignatureValidator([PRIMARY]).check(request_url, INBOUND, signed(own_port)).valid


def test_credentials_and_a_default_port_in_the_request_url_unlike_the_reference() -> None:
    # Twilio signed the URL as configured, without a port; the request arrived with
    # ":443". The reference strips the port by cutting the authority at its first ":",
    # which is inside the credentials here, so it refuses; we accept.
    signed_url = "https://user:pw@bot.example.com/sms"
    request_url = "https://user:pw@bot.example.com:443/sms"
    signature = reference_signature(PRIMARY, signed_url, INBOUND)
    assert not reference_accepts(PRIMARY, request_url, INBOUND, signature)

    assert SignatureValidator([PRIMARY]).check(request_url, INBOUND, signed(signature)).valid


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("bot.example.com:8443", ("bot.example.com", "8443")),
        ("bot.example.com", ("bot.example.com", None)),
        ("[::1]:8443", ("[::1]", "8443")),
        ("[::1]", ("[::1]", None)),
        ("::1", ("::1", None)),
        ("8443", ("8443", None)),
        ("host:８４", ("host:８４", None)),
        ("host:", ("host:", None)),
    ],
)
def test_split_host_port(authority: str, expected: tuple[str, str | None]) -> None:
    assert split_host_port(authority) == expected


def test_an_unsigned_body_cannot_hide_behind_a_second_question_mark() -> None:
    # The first "?" starts the query; a "?" inside a value must not hide bodySHA256, or
    # the body would go unchecked and a forged one would pass with the URL's signature.
    body = '{"Body": "hi"}'
    url = f"{URL}?bodySHA256={hashlib.sha256(body.encode()).hexdigest()}&next=a?b"
    headers = signed(reference_signature(PRIMARY, url, []))
    validator = SignatureValidator([PRIMARY])

    assert validator.check(url, [], headers, body.encode()).valid
    forged = validator.check(url, [], headers, b'{"Body": "bye"}')
    assert (forged.valid, forged.reason) == (False, "body does not match bodySHA256")


def test_an_empty_body_hash_still_demands_a_matching_body() -> None:
    url = f"{URL}?bodySHA256="
    headers = signed(reference_signature(PRIMARY, url, []))
    check = SignatureValidator([PRIMARY]).check(url, [], headers, b'{"Body": "forged"}')
    assert (check.valid, check.reason) == (False, "body does not match bodySHA256")


def test_the_validator_shows_no_secret_in_its_repr() -> None:
    both = repr(SignatureValidator([PRIMARY, SECONDARY], SHARED_KEY))
    assert both == "SignatureValidator(<2 auth tokens>, shared key set)"
    assert repr(SignatureValidator([PRIMARY])) == (
        "SignatureValidator(<1 auth tokens>, shared key none)"
    )


HEADER_STYLES: list[Callable[[str], Mapping[str, str]]] = [
    lambda s: {"X-Twilio-Signature": s},
    lambda s: {"x-twilio-signature": s},
    lambda s: {"X-TWILIO-SIGNATURE": f" {s} "},
    lambda s: Headers({"X-Twilio-Signature": s}),
]


@pytest.mark.parametrize(
    "header_style", HEADER_STYLES, ids=["canonical", "lower-case", "upper-padded", "starlette"]
)
def test_signature_header_is_found_in_any_case(
    header_style: Callable[[str], Mapping[str, str]],
) -> None:
    signature = reference_signature(PRIMARY, URL, INBOUND)
    assert SignatureValidator([PRIMARY]).check(URL, INBOUND, header_style(signature)).valid


# Each case: the settings header Twilio sent, the key and algorithm it signed with, the
# URL we rebuilt, the algorithm we must check with, and whether we accept.
SHA256_CASES = [
    pytest.param(
        "key=KS123,algorithm=HMAC_SHA256", SHARED_KEY, HMAC_SHA256, URL, HMAC_SHA256, True,
        id="documented-header",
    ),
    pytest.param(
        " Algorithm = hmac_sha256 ; key = KS123 ", SHARED_KEY, HMAC_SHA256, URL, HMAC_SHA256, True,
        id="semicolons-spaces-case",
    ),
    pytest.param(
        "key=KS123;algorithm=HMAC-SHA256", SHARED_KEY, HMAC_SHA256, URL, HMAC_SHA256, True,
        id="hyphenated-name",
    ),
    pytest.param(
        "key=KS123,algorithm=HMAC_SHA256", SHARED_KEY, HMAC_SHA256,
        "https://bot.example.com:443/twilio/sms", HMAC_SHA256, True, id="port-variant",
    ),
    pytest.param(
        "key=KS123,algorithm=HMAC_SHA256", PRIMARY, HMAC_SHA256, URL, HMAC_SHA256, False,
        id="sha256-keyed-with-auth-token",
    ),
    pytest.param(
        "key=KS123,algorithm=HMAC_SHA256", PRIMARY, HMAC_SHA1, URL, HMAC_SHA256, False,
        id="header-says-sha256-but-sha1-signature",
    ),
    pytest.param(
        "key=KS123,algorithm=HMAC_SHA256", "another-shared-key", HMAC_SHA256, URL,
        HMAC_SHA256, False, id="wrong-shared-key",
    ),
    pytest.param(
        "algorithm=HMAC_SHA1", PRIMARY, HMAC_SHA1, URL, HMAC_SHA1, True,
        id="explicit-sha1-uses-auth-token",
    ),
    pytest.param(
        "key=KS123", PRIMARY, HMAC_SHA1, URL, HMAC_SHA1, True, id="no-algorithm-is-sha1",
    ),
    pytest.param(
        'key="KS123", algorithm="HMAC_SHA256"', SHARED_KEY, HMAC_SHA256, URL, HMAC_SHA256, True,
        id="quoted-values",
    ),
    pytest.param(
        "key=KS=1=,algorithm=HMAC_SHA256", SHARED_KEY, HMAC_SHA256, URL, HMAC_SHA256, True,
        id="equals-signs-in-the-key-id",
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings_header", "signing_key", "signing_algorithm", "request_url", "checked_as",
     "accepted"),
    SHA256_CASES,
)  # fmt: skip
def test_shared_key_signatures(
    settings_header: str,
    signing_key: str,
    signing_algorithm: str,
    request_url: str,
    checked_as: str,
    accepted: bool,
) -> None:
    signature = reference_signature(signing_key, URL, INBOUND, signing_algorithm)
    headers = signed(signature, **{"X-Twilio-Webhooks-Signature-Settings": settings_header})

    check = SignatureValidator([PRIMARY], SHARED_KEY).check(request_url, INBOUND, headers)

    assert check == SignatureCheck(
        valid=accepted,
        reason="ok" if accepted else "signature does not match",
        algorithm=checked_as,
    )


JSON_BODY = json.dumps({"Body": "hi 👋", "From": "+15005550006"}, ensure_ascii=False)
JSON_URL = f"{URL}?bodySHA256={hashlib.sha256(JSON_BODY.encode()).hexdigest()}"

# Each case: the URL we rebuilt, the body we received, and the verdict.
JSON_CASES = [
    pytest.param(JSON_URL, JSON_BODY, True, "ok", id="body-matches"),
    pytest.param(
        JSON_URL.replace("bot.example.com", "bot.example.com:443"), JSON_BODY, True, "ok",
        id="port-variant",
    ),
    pytest.param(
        JSON_URL, JSON_BODY.replace("hi", "ho"), False, "body does not match bodySHA256",
        id="body-tampered",
    ),
    pytest.param(
        JSON_URL.replace("?bodySHA256=", "?bodySHA256=0"), JSON_BODY, False,
        "body does not match bodySHA256", id="hash-in-url-tampered",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("request_url", "body", "accepted", "reason"), JSON_CASES)
def test_json_bodies_are_signed_through_the_url(
    request_url: str, body: str, accepted: bool, reason: str
) -> None:
    signature = reference_signature(PRIMARY, JSON_URL, [])

    check = SignatureValidator([PRIMARY]).check(request_url, [], signed(signature), body.encode())

    assert (check.valid, check.reason) == (accepted, reason)
    assert reference_accepts(PRIMARY, request_url, body, signature) == accepted


def test_json_body_hash_needs_the_body() -> None:
    signature = reference_signature(PRIMARY, JSON_URL, [])
    check = SignatureValidator([PRIMARY]).check(JSON_URL, [], signed(signature))
    assert check == SignatureCheck(False, "bodySHA256 in URL but no body to check", HMAC_SHA1)


def test_body_hash_covers_params_parsed_from_that_body() -> None:
    # A form body whose hash is in the signed URL: the params are not signed, the body is.
    body = "Body=hello&From=%2B15005550006"
    url = f"{URL}?bodySHA256={hashlib.sha256(body.encode()).hexdigest()}"
    headers = signed(reference_signature(PRIMARY, url, []))
    validator = SignatureValidator([PRIMARY])

    assert validator.check(url, [("Body", "hello")], headers, body.encode()).valid
    forged = "Body=bye&From=%2B15005550006"
    assert not validator.check(url, [("Body", "bye")], headers, forged.encode()).valid


GOOD = reference_signature(PRIMARY, URL, INBOUND)

# Each case: tokens, shared key, headers, and the reason we must give.
FAILURE_CASES = [
    pytest.param([PRIMARY], None, {}, "missing X-Twilio-Signature header", id="missing-header"),
    pytest.param(
        [PRIMARY], None, {"X-Twilio-Signature": "  "}, "missing X-Twilio-Signature header",
        id="blank-header",
    ),
    pytest.param(
        [PRIMARY], None, signed(reference_signature(SECONDARY, URL, INBOUND)),
        "signature does not match", id="mismatch",
    ),
    pytest.param(
        [PRIMARY], None, signed(GOOD, **SHA256_SETTINGS),
        "sha256 signature but no shared key configured", id="sha256-without-shared-key",
    ),
    pytest.param(
        [PRIMARY], "  ", signed(GOOD, **SHA256_SETTINGS),
        "sha256 signature but no shared key configured", id="sha256-blank-shared-key",
    ),
    pytest.param(["", "\n"], SHARED_KEY, signed(GOOD), "no auth token configured", id="no-tokens"),
    pytest.param(
        [PRIMARY], SHARED_KEY,
        signed(GOOD, **{"X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5"}),
        "unsupported signature algorithm 'HMAC-MD5'", id="unsupported-algorithm",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("tokens", "shared_key", "headers", "reason"), FAILURE_CASES)
def test_failures_say_why_without_revealing_secrets(
    tokens: Sequence[str], shared_key: str | None, headers: dict[str, str], reason: str
) -> None:
    validator = SignatureValidator(tokens, shared_key)

    check = validator.check(URL, INBOUND, headers)

    assert (check.valid, check.reason) == (False, reason)
    secrets = [
        PRIMARY,
        SECONDARY,
        SHARED_KEY,
        reference_signature(PRIMARY, URL, INBOUND),
        reference_signature(SHARED_KEY, URL, INBOUND, HMAC_SHA256),
    ]
    for text in (repr(check), repr(validator)):
        for secret in secrets:
            assert secret not in text
