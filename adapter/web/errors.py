"""The operator APIs' error body, and the app-wide handler for a store that is down.

Every error an operator API gives is `{"error": "what is wrong"}`. A store failure that
an endpoint does not handle itself becomes a 503 saying so, never a 500 with a traceback.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapter.store.base import StoreError

logger = logging.getLogger("adapter.web")


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def store_unavailable(request: Request, error: Exception) -> Response:
    logger.warning("%s %s: the store is unavailable: %s", request.method, request.url.path, error)
    return error_response(503, "the store is unavailable")


EXCEPTION_HANDLERS = {StoreError: store_unavailable}
