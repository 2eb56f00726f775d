"""Twilio's error answers: `{"code", "message", "more_info", "status"}` with the HTTP status."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse

# The Twilio error codes the emulator answers with.
AUTHENTICATE = 20003
NOT_FOUND = 20404
METHOD_NOT_ALLOWED = 20004
INVALID_PARAMETER = 20001
TOO_MANY_REQUESTS = 20429
INTERNAL_ERROR = 20500
TO_REQUIRED = 21604
TO_INVALID = 21211
BODY_REQUIRED = 21602
FROM_REQUIRED = 21603
FROM_NOT_OURS = 21606
BODY_TOO_LONG = 21617
TOO_MANY_MEDIA = 21623
CHANNEL_MISMATCH = 21910
INVALID_VALIDITY_PERIOD = 21624
CONTENT_SID_REQUIRED = 21654
CONTENT_SID_INVALID = 21655
CONTENT_VARIABLES_INVALID = 21656
# Twilio documents no Send Message code for a foreign App; 21420 ("ApplicationSid is not
# accessible") is its nearest.
APPLICATION_NOT_FOUND = 21420
SEND_AT_MISSING = 35111
NOT_CANCELABLE = 30409
SCHEDULE_OUT_OF_WINDOW = 35114
SCHEDULE_NEEDS_SERVICE = 35118
# On the message, not the request: the validity period ran out in the queue.
VALIDITY_PERIOD_EXPIRED = 30036


class TwilioApiError(Exception):
    """Raised inside an endpoint; answered as Twilio's error JSON."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(
            {
                "code": self.code,
                "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status,
            },
            status_code=self.status,
            headers=self.headers,
        )


def not_found(path: str) -> TwilioApiError:
    return TwilioApiError(404, NOT_FOUND, f"The requested resource {path} was not found")
