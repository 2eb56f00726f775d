"""Who may use the console: anyone in dev mode (the emulator beside it is just as open),
elsewhere only the holder of `SMS_ADAPTER_ADMIN_TOKEN`.

The token comes as a bearer header (checked by the operator API's own `authorized`), or
as `?token=` where a header cannot be set (a link opened in a browser, an EventSource). The page keeps it in memory and never gets it
back from the server; the log's redactor hides it in access log lines.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from adapter.admin import authorized

if TYPE_CHECKING:
    from adapter.app import Channel


def denied(request: Request) -> Response | None:
    """None when the request may go on, else the answer: 404 when the console is off
    (not dev mode, no admin token), 401 for a missing or wrong token."""
    channel: Channel = request.app.state.channel
    if channel.settings.dev_mode:
        return None
    refused = authorized(channel, request)
    if refused is None or refused.status_code == 404:
        return refused
    presented = request.query_params.get("token", "")
    token = channel.settings.admin_token or ""
    if presented and hmac.compare_digest(presented.encode(), token.encode()):
        return None
    return refused


def console_enabled(request: Request) -> bool:
    """Whether the console exists here at all (its static files are public where it does:
    they hold no data, and a page cannot put a header on a <script> request)."""
    channel: Channel = request.app.state.channel
    return channel.settings.dev_mode or bool(channel.settings.admin_token)
