"""One guard for every operator path, in front of the endpoints.

| paths                                  | no admin token | with SMS_ADAPTER_ADMIN_TOKEN      |
|----------------------------------------|----------------|-----------------------------------|
| /api/messages*, /api/conversations*    | 404 (no API)   | bearer token, else 401            |
| /console, /console/api/*               | 404, open in dev mode | bearer or ?token=, else 401 |
| /metrics                               | open           | bearer token, else 401            |

With no token configured the operator API does not exist (404), so a forgotten setting
never leaves it open. The console's event stream and links cannot carry a header, so
they may carry the token as `?token=` (the log redactor hides it in access lines).
Everything else (webhooks, health, the Bot Framework connector) has its own check.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


class Guard(Enum):
    OPERATOR = "operator"  # the API exists only with a token
    CONSOLE = "console"  # like OPERATOR, open in dev mode, token also as ?token=
    OPEN_UNLESS_TOKEN = "open_unless_token"  # scrapers on a private network


# A path ending in "/" guards everything below it; any other guards itself and below.
_GUARDED_PATHS: tuple[tuple[str, Guard], ...] = (
    ("/api/messages", Guard.OPERATOR),
    ("/api/conversations/", Guard.OPERATOR),
    ("/console/api/", Guard.CONSOLE),
    ("/metrics", Guard.OPEN_UNLESS_TOKEN),
)
# The console's page is guarded; its static files are not (they hold no data, and a
# <script> request cannot carry a header).
_GUARDED_PAGES: dict[str, Guard] = {"/console": Guard.CONSOLE, "/console/": Guard.CONSOLE}


def guard_for(path: str) -> Guard | None:
    if path in _GUARDED_PAGES:
        return _GUARDED_PAGES[path]
    for prefix, guard in _GUARDED_PATHS:
        if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
            return guard
    return None


@dataclass(frozen=True)
class AdminAccess:
    token: str | None
    dev_mode: bool = False

    def refusal(self, guard: Guard, connection: HTTPConnection) -> Response | None:
        """None when the request may go on, else the response to give."""
        if guard is Guard.CONSOLE and self.dev_mode:
            return None
        if not self.token:
            return None if guard is Guard.OPEN_UNLESS_TOKEN else Response(status_code=404)
        if _matches(_bearer(connection), self.token):
            return None
        if guard is Guard.CONSOLE and _matches(connection.query_params.get("token"), self.token):
            return None
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})


class AdminAuthMiddleware:
    def __init__(self, app: ASGIApp, access: AdminAccess) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            guard = guard_for(scope["path"])
            if guard is not None:
                refused = self._access.refusal(guard, HTTPConnection(scope))
                if refused is not None:
                    await refused(scope, receive, send)
                    return
        await self._app(scope, receive, send)


def _bearer(connection: HTTPConnection) -> str | None:
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else None


def _matches(presented: str | None, token: str) -> bool:
    return bool(presented) and hmac.compare_digest(str(presented).encode(), token.encode())
