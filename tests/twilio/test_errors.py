"""Twilio's error answers and httpx failures, classified into one exception tree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from adapter.twilio.errors import (
    TwilioApiError,
    TwilioError,
    TwilioRateLimited,
    TwilioRequestRejected,
    TwilioServerError,
    error_from_response,
    error_from_transport,
    is_retryable_code,
    parse_retry_after,
)


def twilio_error(code: int, status: int, message: str = "Twilio says no") -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def answer(status: int, code: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=twilio_error(code, status), headers=headers)


REJECTED, LIMITED, SERVER = TwilioRequestRejected, TwilioRateLimited, TwilioServerError


@pytest.mark.parametrize(
    ("response", "error_class", "retryable", "code", "retry_after"),
    [
        # Permanent refusals of a send.
        (answer(400, 21211), REJECTED, False, 21211, None),
        (answer(400, 21610), REJECTED, False, 21610, None),
        (answer(400, 21614), REJECTED, False, 21614, None),
        (answer(401, 20003), REJECTED, False, 20003, None),
        (answer(404, 20404), REJECTED, False, 20404, None),
        (answer(400, 99999), REJECTED, False, 99999, None),
        # A 4xx the table marks as worth another try.
        (answer(400, 21611), REJECTED, True, 21611, None),
        # Rate limits: by status, by code, with and without a JSON body.
        (answer(429, 20429, {"Retry-After": "7"}), LIMITED, True, 20429, 7.0),
        (answer(400, 20429), LIMITED, True, 20429, None),
        (
            httpx.Response(429, text="Slow down", headers={"Retry-After": "1.5"}),
            LIMITED,
            True,
            None,
            1.5,
        ),
        # Twilio's side failing, whatever the body says.
        (answer(500, 20500), SERVER, True, 20500, None),
        (httpx.Response(503, text="<html>Service Unavailable</html>"), SERVER, True, None, None),
        (httpx.Response(503, headers={"Retry-After": "30"}), SERVER, True, None, 30.0),
        # Odd bodies: the code as a string, a JSON value that is not an object.
        (httpx.Response(400, json={"code": "21211", "message": "x"}), REJECTED, False, 21211, None),
        (httpx.Response(400, json=[21211]), REJECTED, False, None, None),
    ],
)
def test_error_answers_are_classified(
    response: httpx.Response,
    error_class: type[TwilioApiError],
    retryable: bool,
    code: int | None,
    retry_after: float | None,
) -> None:
    error = error_from_response(response, "send")

    assert type(error) is error_class
    assert isinstance(error, TwilioError)
    assert (error.retryable, error.code, error.retry_after) == (retryable, code, retry_after)
    assert (error.status, error.operation) == (response.status_code, "send")


def test_message_names_the_call_the_code_and_twilios_explanation() -> None:
    body = twilio_error(21211, 400, "The 'To' number +1555 is not a valid phone number.")
    error = error_from_response(httpx.Response(400, json=body), "send")

    assert (error.message, error.more_info) == (body["message"], body["more_info"])
    assert str(error) == (
        "Twilio send failed: HTTP 400, error 21211 (invalid 'To' phone number): "
        "The 'To' number +1555 is not a valid phone number. "
        "[https://www.twilio.com/docs/errors/21211]"
    )


NOT_JSON = "(the response was not Twilio's JSON)"


@pytest.mark.parametrize(
    ("response", "expected_message"),
    [
        (httpx.Response(502, text="<html>oops</html>"), f"Bad Gateway {NOT_JSON}"),
        (httpx.Response(502), f"Bad Gateway {NOT_JSON}"),
        (httpx.Response(400, json={"code": 21211}), "Bad Request"),
    ],
)
def test_answers_without_twilios_message_fall_back_to_the_http_reason(
    response: httpx.Response, expected_message: str
) -> None:
    error = error_from_response(response, "get")
    assert error.message == expected_message
    # A body that is not Twilio's JSON is never quoted: it could echo anything.
    assert "oops" not in str(error)


NOW = datetime(2024, 3, 5, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Tue, 05 Mar 2024 12:00:10 GMT", 10.0),
        ("Tue, 05 Mar 2024 11:00:00 GMT", 0.0),  # already past: retry now
        (None, None),
        ("", None),
        ("-3", None),
        ("inf", None),
        ("nan", None),
        ("soon", None),
    ],
)
def test_retry_after_accepts_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("failure", "ambiguous"),
    [
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("timed out"), False),
        (httpx.PoolTimeout("no connection free"), False),
        (httpx.WriteTimeout("timed out"), False),
        (httpx.WriteError("broken pipe"), False),
        (httpx.LocalProtocolError("bad header"), False),
        (httpx.ProxyError("proxy refused CONNECT"), False),
        (httpx.UnsupportedProtocol("ftp"), False),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.ReadError("reset by peer"), True),
        (httpx.RemoteProtocolError("disconnected"), True),
        (httpx.CloseError("close failed"), True),
        (httpx.DecodingError("bad gzip"), True),
        (httpx.TooManyRedirects("loop"), True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_transport_failures_say_whether_the_request_may_have_arrived(
    failure: httpx.RequestError, ambiguous: bool
) -> None:
    error = error_from_transport(failure, "send")

    assert (error.ambiguous, error.retryable, error.operation) == (ambiguous, True, "send")
    expected_outcome = "may have reached Twilio" if ambiguous else "did not reach Twilio"
    assert str(error).startswith(f"Twilio send failed: {type(failure).__name__}: ")
    assert str(error).endswith(expected_outcome)


# The codes the channel decides on, and the decision. Changing one is a policy change.
@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        (20003, False),
        (20404, False),
        (20429, True),
        (21211, False),
        (21408, False),
        (21602, False),
        (21606, False),
        (21610, False),
        (21611, True),
        (21614, False),
        (21617, False),
        (30001, True),
        (30003, True),
        (30007, False),
        (None, False),
        (12345, False),  # unknown: permanent until someone says otherwise
    ],
)
def test_error_code_table_says_which_failures_are_worth_a_retry(
    code: int | None, retryable: bool
) -> None:
    assert is_retryable_code(code) is retryable


SECRET = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def test_secrets_echoed_in_an_answer_are_masked() -> None:
    body = {"code": 20003, "message": f"bad token {SECRET}", "more_info": f"?t={SECRET}"}
    error = error_from_response(httpx.Response(401, json=body), "send", secrets=[SECRET, ""])

    assert SECRET not in str(error)
    assert (error.message, error.more_info) == ("bad token ***", "?t=***")


def test_secrets_in_a_transport_failure_are_masked() -> None:
    error = error_from_transport(httpx.ConnectError(f"proxy: {SECRET}"), "get", secrets=[SECRET])
    assert SECRET not in str(error)
    assert "***" in str(error)
