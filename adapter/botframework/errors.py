"""The Bot Connector API's error answer: `{"error": {"code": ..., "message": ...}}`.

Microsoft's SDKs turn any answer that is not 2xx into an `ErrorResponseException` and read
this body for its message, so every refusal of the connector carries one. Messages name
what is wrong and never a secret (a path secret, a token).
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class ConnectorError(Exception):
    """A connector call we refuse: the HTTP status and the ErrorResponse to answer."""

    def __init__(self, status: int, code: str, message: str, *, logged: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        # Already logged where it arose (once per cause, not once per call).
        self.logged = logged


def bad_request(message: str, code: str = "BadArgument") -> ConnectorError:
    return ConnectorError(400, code, message)


def unauthorized(message: str) -> ConnectorError:
    return ConnectorError(401, "Unauthorized", message)


def not_found(message: str, code: str = "NotFound") -> ConnectorError:
    return ConnectorError(404, code, message)


def error_response(error: ConnectorError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}}, status_code=error.status
    )
