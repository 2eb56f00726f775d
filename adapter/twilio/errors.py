"""Everything that can go wrong talking to Twilio's REST API, as one exception tree.

```
TwilioError                      base: .operation ("send", "get", "list"), .retryable
├── TwilioApiError               Twilio answered with an error: .status, .code, .message,
│   │                            .more_info, .retry_after (seconds, from Retry-After)
│   ├── TwilioRateLimited        HTTP 429 or code 20429: always retryable
│   ├── TwilioServerError        HTTP 5xx: always retryable
│   └── TwilioRequestRejected    any other 4xx: retryable only if ERROR_CODES says so
└── TwilioTransportError         no usable answer: .ambiguous says whether the request
                                 may have reached Twilio (and so may have been acted on)
```

`retryable` answers "could the same request succeed later?". For a transport error it is
always True, but retrying an *ambiguous* send may deliver the text twice: look the
message up (list by To and date) before sending it again.

Error text names the operation and Twilio's own explanation, never the credentials:
callers pass their secrets so that anything echoed back is masked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import httpx

from adapter.twilio.resources import parse_rfc2822


class ErrorCode(NamedTuple):
    description: str
    retryable: bool


# Twilio's error codes (https://www.twilio.com/docs/api/errors) that this channel meets,
# and whether the same message may succeed if sent again later. Codes not listed are
# treated as permanent: resending a rejected request unchanged is usually pointless.
# The 300xx codes arrive on a Message (error_code) after it was accepted, not on a
# REST response; they live here so that there is one answer to "retry this?".
ERROR_CODES: Final[Mapping[int, ErrorCode]] = MappingProxyType(
    {
        # The account and the request itself.
        20003: ErrorCode("authentication failed", False),
        20005: ErrorCode("account not active", False),
        20008: ErrorCode("not available with test credentials", False),
        20404: ErrorCode("resource not found", False),
        20429: ErrorCode("too many requests", True),
        20500: ErrorCode("Twilio internal error", True),
        20503: ErrorCode("Twilio service unavailable", True),
        # Send Message refused the request.
        21211: ErrorCode("invalid 'To' phone number", False),
        21212: ErrorCode("invalid 'From' phone number", False),
        21408: ErrorCode("sending to this region is not enabled", False),
        21602: ErrorCode("message body is required", False),
        21603: ErrorCode("'From' phone number is required", False),
        21604: ErrorCode("'To' phone number is required", False),
        21606: ErrorCode("'From' is not a message-capable Twilio number", False),
        21608: ErrorCode("trial accounts may only send to verified numbers", False),
        21610: ErrorCode("recipient has unsubscribed (replied STOP)", False),
        21611: ErrorCode("the 'From' number's message queue is full", True),
        21612: ErrorCode("'To' number cannot be reached from this 'From'", False),
        21614: ErrorCode("'To' number is not a mobile number", False),
        21617: ErrorCode("message body exceeds 1600 characters", False),
        21620: ErrorCode("invalid media URL", False),
        21621: ErrorCode("'From' number is not enabled for MMS", False),
        21623: ErrorCode("too many media URLs", False),
        # Delivery failed after Twilio accepted the message.
        30001: ErrorCode("queue overflow", True),
        30002: ErrorCode("account suspended", False),
        30003: ErrorCode("unreachable destination handset", True),
        30004: ErrorCode("message blocked", False),
        30005: ErrorCode("unknown destination handset", False),
        30006: ErrorCode("landline or unreachable carrier", False),
        30007: ErrorCode("message filtered by the carrier", False),
        30008: ErrorCode("unknown delivery error", True),
        30010: ErrorCode("message price exceeds max price", False),
        30032: ErrorCode("toll-free number not verified", False),
        30034: ErrorCode("message from an unregistered (A2P 10DLC) number", False),
    }
)


def is_retryable_code(code: int | None) -> bool:
    """Whether a message that failed with Twilio error `code` is worth sending again."""
    entry = ERROR_CODES.get(code) if code is not None else None
    return entry is not None and entry.retryable


class TwilioError(Exception):
    """A call to Twilio's REST API failed."""

    def __init__(self, summary: str, *, operation: str, retryable: bool) -> None:
        super().__init__(summary)
        self.operation = operation
        self.retryable = retryable


class TwilioApiError(TwilioError):
    """Twilio (or something in front of it) answered with an HTTP error."""

    def __init__(
        self,
        *,
        operation: str,
        status: int,
        code: int | None,
        message: str,
        more_info: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.more_info = more_info
        self.retry_after = retry_after
        super().__init__(
            self._summary(operation),
            operation=operation,
            retryable=self._is_retryable(),
        )

    def _is_retryable(self) -> bool:
        return is_retryable_code(self.code)

    def _summary(self, operation: str) -> str:
        entry = ERROR_CODES.get(self.code) if self.code is not None else None
        what = f"HTTP {self.status}"
        if self.code is not None:
            what += f", error {self.code}"
            if entry is not None:
                what += f" ({entry.description})"
        summary = f"Twilio {operation} failed: {what}: {self.message}"
        if self.more_info:
            summary += f" [{self.more_info}]"
        return summary


class TwilioRateLimited(TwilioApiError):
    """Too many requests: wait `retry_after` seconds (when given) and try again."""

    def _is_retryable(self) -> bool:
        return True


class TwilioServerError(TwilioApiError):
    """Twilio failed on its side (HTTP 5xx); the same request may succeed later."""

    def _is_retryable(self) -> bool:
        return True


class TwilioRequestRejected(TwilioApiError):
    """Twilio refused the request (HTTP 4xx); usually permanent, see ERROR_CODES."""


class TwilioTransportError(TwilioError):
    """The request did not get a usable answer: the network, TLS or HTTP itself failed."""

    def __init__(self, *, operation: str, detail: str, ambiguous: bool) -> None:
        self.detail = detail
        self.ambiguous = ambiguous
        outcome = (
            "the request may have reached Twilio"
            if ambiguous
            else "the request did not reach Twilio"
        )
        super().__init__(
            f"Twilio {operation} failed: {detail}; {outcome}",
            operation=operation,
            retryable=True,
        )


# httpx errors raised before Twilio could have received a whole request. A request
# whose bytes were only partly written (WriteTimeout, WriteError) is incomplete: an HTTP
# server cannot act on a body shorter than its Content-Length, so those are not
# ambiguous. Everything else (read timeouts, dropped connections, protocol errors from
# the server, undecodable answers, errors we do not know) is treated as "may have".
_NOT_SENT: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteTimeout,
    httpx.WriteError,
    httpx.LocalProtocolError,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


def error_from_transport(
    error: httpx.RequestError, operation: str, *, secrets: Iterable[str] = ()
) -> TwilioTransportError:
    """Describe an httpx failure, deciding whether Twilio may have seen the request."""
    reason = str(error).strip()
    detail = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    return TwilioTransportError(
        operation=operation,
        detail=redact(detail, secrets),
        ambiguous=not isinstance(error, _NOT_SENT),
    )


def error_from_response(
    response: httpx.Response, operation: str, *, secrets: Iterable[str] = ()
) -> TwilioApiError:
    """Build the error for a non-2xx answer from Twilio's JSON error body.

    Twilio's body looks like {"code": 21211, "message": "...", "more_info": "...",
    "status": 400}. Proxies and load balancers answer with HTML or nothing; then the
    HTTP status alone decides, and the body is not quoted (it could echo anything).
    """
    secrets = tuple(secrets)
    payload = _json_object(response)
    status = response.status_code
    code = _as_int(payload.get("code"))
    message = payload.get("message")
    if not isinstance(message, str) or not message:
        reason = response.reason_phrase or "no reason given"
        message = reason if payload else f"{reason} (the response was not Twilio's JSON)"
    more_info = payload.get("more_info")
    kind: type[TwilioApiError]
    if status == 429 or code == 20429:
        kind = TwilioRateLimited
    elif status >= 500:
        kind = TwilioServerError
    else:
        kind = TwilioRequestRejected
    return kind(
        operation=operation,
        status=status,
        code=code,
        message=redact(message, secrets),
        more_info=redact(more_info, secrets) if isinstance(more_info, str) else None,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP-date)."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        return _seconds_until(value, now or datetime.now(UTC))
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every occurrence of each non-empty secret in `text`."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _seconds_until(http_date: str, now: datetime) -> float | None:
    # An HTTP-date is an RFC 2822 date in GMT, the format Twilio dates its resources in.
    moment = parse_rfc2822(http_date)
    if moment is None:
        return None
    # A date already past means "retry now", not "never".
    return max(0.0, (moment - now).total_seconds())


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = json.loads(response.content)
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _as_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        if len(value.strip()) > 18:
            return None
        return int(value)
    return None
